"""The watcher's own lines, from events alone (no stack): counts read as English, one chunk or row or retry in the
singular, and the insights step counted as a step, not a chunk."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from client.watch import Watcher
from shared.events import BranchPlan, EventBody, EventKind, ProgressEvent


def _event(seq: int, kind: EventKind, step: str = "", branch: str | None = None, **body: object) -> ProgressEvent:
    return ProgressEvent.model_validate({
        "event_id": f"r:{kind}:{step}:{seq}", "run_id": "r", "kind": kind, "step": step, "attempt": 1,
        "branch": branch, "at": datetime(2026, 12, 5, tzinfo=UTC), "seq": seq, "body": EventBody.model_validate(body),
    })


def test_totals_count_in_the_singular_for_one_and_call_the_insights_step_a_step() -> None:
    console = Console(record=True, width=200)
    watcher = Watcher(console)
    watcher.handle(_event(1, "ingest_done", plans=[BranchPlan(branch="contacts", rows=14, chunks=4),
                                                   BranchPlan(branch="opportunities", rows=1, chunks=1)]))
    watcher.handle(_event(2, "gate_verdict", "contacts/chunk-00000", "contacts", passed=False, layer="deterministic",
                          reasons=["contact id 10 was not answered"]))
    watcher.handle(_event(3, "retry_with_feedback", "contacts/chunk-00000", "contacts"))
    for seq, (step, branch) in enumerate([("contacts/chunk-00000", "contacts"), ("opportunities/chunk-00000",
                                           "opportunities"), ("insights", None)], start=4):
        watcher.handle(_event(seq, "step_succeeded", step, branch))
    watcher.handle(_event(7, "gate_verdict", "opportunities/chunk-00000", "opportunities", passed=False,
                          layer="ai", reasons=["risk unsupported"]))
    watcher.handle(_event(8, "gate_verdict", "opportunities/chunk-00000", "opportunities", passed=False,
                          layer="ai", reasons=["risk unsupported"]))

    assert "#1 ingested: contacts 14 rows in 4 chunks, opportunities 1 row in 1 chunk" in console.export_text()
    assert watcher.totals() == [
        "contacts: 1/4 chunks done, 1 rejection, 1 retry",
        "opportunities: 1/1 chunks done, 2 rejections, 0 retries",
        "insights: 1/1 steps done, 0 rejections, 0 retries",
    ]
