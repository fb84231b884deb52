"""Replay: the committed histories of real runs (tests/histories, re-recorded on purpose by `make histories`) are
replayed by the current workflow code with the production data converter (payload codec and encoded failures) and
interceptors. A change that would break a running workflow fails here, not in production."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from services.orchestrator import outbox
from services.orchestrator.workflows import ChunkBatchWorkflow, CrmAnalysisWorkflow
from shared.codec import data_converter, parse_keyring
from shared.events import ProgressEvent
from shared.progress import ProgressPublisher
from shared.temporal import workflow_runner
from tests.harness import ROOT
from tests.replay_variants import AnnouncesMore, PausesFirst, PausesFirstPatched

HISTORIES = sorted((ROOT / "tests" / "histories").glob("*/*.json"))
VERSIONS = sorted({p.parent.name for p in HISTORIES})
SCENARIOS = {"clean", "rejected-then-fixed", "budget-spent", "quarantine", "review-decided", "analyzer-crash"}


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _marker_data(event: dict[str, Any], field: str) -> dict[str, Any]:
    payload = event["markerRecordedEventAttributes"]["details"][field]["payloads"][0]
    return dict(json.loads(base64.b64decode(payload["data"])))


def commands(path: Path) -> tuple[list[str], list[str], list[str]]:
    """What a recorded history did: its activities, its local activities and its patches, in order."""
    remote, local, patches = [], [], []
    for event in json.loads(path.read_text())["events"]:
        if "activityTaskScheduledEventAttributes" in event:
            remote.append(event["activityTaskScheduledEventAttributes"]["activityType"]["name"])
        elif (marker := event.get("markerRecordedEventAttributes", {}).get("markerName")) == "core_local_activity":
            local.append(_marker_data(event, "data")["activity_type"])
        elif marker == "core_patch":
            patches.append(_marker_data(event, "patch-data")["id"])
    return remote, local, patches


def replayer(*classes: type) -> Replayer:
    keyring = parse_keyring("replay:" + "A" * 43 + "=")  # opens nothing recorded in clear; decodes pass-through
    return Replayer(workflows=list(classes) or [CrmAnalysisWorkflow, ChunkBatchWorkflow],
                    data_converter=data_converter(pydantic_data_converter, keyring),
                    interceptors=[TracingInterceptor()], workflow_runner=workflow_runner())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_scenario_is_recorded_and_is_what_it_says(version: str) -> None:
    histories = [p for p in HISTORIES if p.parent.name == version]
    # a branch of one batch is gated in the run itself
    inline = version in ("v4-local-progress", "v5-direct-progress", "current")
    assert {p.name.split(".")[0] for p in histories} == (SCENARIOS | ({"batched"} if inline else set())
                                                         | ({"rounds"} if version == "current" else set()))
    text = {p.name: p.read_text() for p in histories}

    def scenario(name: str) -> str:  # the run and its batches' histories, as one text
        return "".join(t for n, t in text.items() if n.startswith(f"{name}."))

    assert "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED" in text["budget-spent.run.json"]
    assert "GateBudgetSpent" in scenario("budget-spent")
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in scenario("review-decided")
    for name in ("clean", "rejected-then-fixed", "quarantine", "review-decided", "analyzer-crash"):
        assert "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" in text[f"{name}.run.json"], name
    # v1 passed gate records in payloads; v2 keeps them in the store with an activity per batch; v3 records them and
    # writes the report in local activities and announces a verdict with what follows; the current version gates a
    # branch of one batch in the run itself, and the batches of a branch of several in child workflows (v4); the
    # fifth announces progress without a local activity (v5), and the current version hands the gate records of a
    # branch gated in the run to the aggregation step instead of a local activity of their own
    remote, local, patches = commands(ROOT / "tests" / "histories" / version / "clean.run.json")
    batch = "batched.contacts-batch-0000.json" if inline else "clean.contacts-batch-0000.json"
    _, batch_local, batch_patches = commands(ROOT / "tests" / "histories" / version / batch)
    assert patches == {"v1-lists": [], "v2-manifests": ["gate-manifests"],
                       "v3-children": ["lean-hand-offs", "gate-manifests"],
                       "v4-local-progress": ["lean-hand-offs", "inline-batches", "gate-manifests"],
                       "v5-direct-progress": ["direct-progress", "lean-hand-offs", "inline-batches", "gate-manifests"],
                       "current": ["direct-progress", "lean-hand-offs", "inline-batches", "records-with-aggregation",
                                   "gate-manifests"]}[version]
    assert ("record_batch" in remote, "write_report" in remote) == ((True, True) if version == "v2-manifests" else
                                                                    (False, version == "v1-lists"))
    lean = version in ("v3-children", "v4-local-progress", "v5-direct-progress", "current")
    assert "write_report" in local if lean else "write_report" not in local
    # both branches of the clean run are gated in the run: their records go with the aggregation's request
    assert ("record_batch" in local) == (lean and version != "current")
    batched_remote, batched_local, _ = commands(ROOT / "tests" / "histories" / version / "batched.run.json") \
        if inline else ([], [], [])
    if version == "current":  # a branch of several batches records each as its child ends; the one-batch branch not
        assert batched_local.count("record_batch") == 2 and batched_remote.count("aggregate_enrichments") == 1
        # five chunks, three a batch at most, two in flight: batches of whole rounds, 2, 2 and 1 (whole-rounds)
        _, _, rounds_patches = commands(ROOT / "tests" / "histories" / version / "rounds.run.json")
        assert "whole-rounds" in rounds_patches
        assert [commands(ROOT / "tests" / "histories" / version / f"rounds.contacts-batch-{n:04d}.json")[0].count(
            "enrich_contact_chunk") for n in range(3)] == [2, 2, 1]
        assert "whole-rounds" not in patches + batch_patches  # asked only where it changes the batches
    assert batch_patches == {"v3-children": ["lean-hand-offs"],
                             "v4-local-progress": ["lean-hand-offs", "inline-batches"],
                             "v5-direct-progress": ["direct-progress", "lean-hand-offs", "inline-batches"],
                             "current": ["direct-progress", "lean-hand-offs", "inline-batches"]}.get(version, [])
    direct = version in ("v5-direct-progress", "current")
    assert ("publish_progress_many" in batch_local) == (lean and not direct)
    announced = [a for a in local + batch_local if a.startswith("publish_progress")]
    assert (announced == []) == direct  # progress without a local activity
    assert ("enrich_contact_chunk" in remote) == inline
    assert ("clean.contacts-batch-0000.json" in text) == (not inline)
    crash = json.loads(text["analyzer-crash.run.json" if inline else "analyzer-crash.contacts-batch-0000.json"])
    started = [e["activityTaskStartedEventAttributes"] for e in crash["events"]
               if "activityTaskStartedEventAttributes" in e]
    assert any(a.get("attempt", 1) > 1 for a in started), "the killed analyzer's step ran again"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_the_current_code_replays_every_recorded_history(path: Path) -> None:
    result = await replayer().replay_workflow(history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_an_unpatched_change_fails_replay_and_a_patched_one_passes() -> None:
    assert VERSIONS == ["current", "v1-lists", "v2-manifests", "v3-children", "v4-local-progress",
                        "v5-direct-progress"]
    run = history(ROOT / "tests" / "histories" / "current" / "clean.run.json")
    broken = await replayer(PausesFirst, ChunkBatchWorkflow).replay_workflow(run, raise_on_replay_failure=False)
    assert broken.replay_failure is not None and "nondetermin" in str(broken.replay_failure).lower()
    patched = await replayer(PausesFirstPatched, ChunkBatchWorkflow).replay_workflow(
        run, raise_on_replay_failure=False)
    assert patched.replay_failure is None, patched.replay_failure


async def test_progress_is_no_command_and_is_not_sent_again_on_replay() -> None:
    """An announcement more replays (it is no command); and replaying a whole run hands nothing to a publisher."""
    handed: list[ProgressEvent] = []

    class Spy:
        def submit(self, event: ProgressEvent) -> int:
            handed.append(event)
            return 0

    loop = asyncio.get_running_loop()
    outbox.install(cast(ProgressPublisher, Spy()), loop)
    try:
        for path in sorted((ROOT / "tests" / "histories" / "current").glob("*.json")):
            result = await replayer(AnnouncesMore, ChunkBatchWorkflow).replay_workflow(
                history(path), raise_on_replay_failure=False)
            assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
        await asyncio.sleep(0.05)  # anything handed over would be on the loop by now
    finally:
        outbox.uninstall()
    assert handed == []
