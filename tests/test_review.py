"""A spent gate budget under the review and quarantine policies, through the real CLI, workers and dev server.

Every decision is taken the way a reviewer takes it (``tollgate review``), including a correction the step's rules
refuse and one they accept; nobody deciding in time quarantines; the wait survives the orchestrator being killed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from client.cli import start_run
from client.review import ReviewError, read_correction, waiting_steps
from deploy.scripted_model import ScriptedLlm
from shared.contracts import PendingReview, RunResult
from shared.failures import failure_reason
from tests.harness import ARTICLE, Stack, tollgate_cli
from tests.test_endings import write_contacts
from tests.test_progress import events_of

OPPORTUNITIES = ARTICLE / "crm_opportunities.csv"


async def until_waiting(client: Client, run_id: str, count: int, within: float = 60) -> list[PendingReview]:
    deadline = time.monotonic() + within
    while True:
        pending = await waiting_steps(client, run_id)
        if len(pending) >= count:
            return pending
        assert time.monotonic() < deadline, f"{len(pending)} of {count} steps waiting: {pending}"
        await asyncio.sleep(0.3)


def review_env(stack: Stack, **extra: str) -> dict[str, str]:
    return {**stack.env, "TOLLGATE_REVIEWER": "alice", **extra}


async def test_every_decision_through_the_cli(client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str,
                                             tmp_path: Path) -> None:
    # five contacts, one per chunk, every one a title the model is asked about; chunks 0-3 spend their budget
    contacts = write_contacts(tmp_path / "contacts.csv", 5)
    # contact 1's title is its own: no other chunk's label of the same title outvotes the reviewer's approval
    contacts.write_text(contacts.read_text().replace("1,Person 1,Company 1,Engineering Manager",
                                                     "1,Person 1,Company 1,Program Manager"))
    # chunk 0 labels a manager junior (the rules refuse it; the reviewer approves it, overriding them)
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["all_junior"])
    for index in range(1, 4):
        scripted_llm.script(run_id, f"contacts/chunk-{index:05d}", "contact-enricher",
                            ["invent_ids", "invent_ids", "correct"] if index == 2 else ["invent_ids"])
    settings = stack.settings.model_copy(update={"contact_chunk_size": 1, "gate_attempts": 2, "on_spent": "review",
                                                 "max_parallel_chunks": 5})
    handle = await start_run(client, settings, contacts, OPPORTUNITIES, run_id)
    pending = await until_waiting(client, run_id, 4)
    assert {p.step for p in pending} == {f"contacts/chunk-{i:05d}" for i in range(4)}
    env = review_env(stack)

    listed = await tollgate_cli(env, "review")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "contacts/chunk-00003" in listed.stdout
    assert "4 steps waiting for a review" in listed.stdout

    shown = await tollgate_cli(env, "review", run_id, "contacts/chunk-00001")
    assert shown.returncode == 0, shown.stderr
    assert "Person 2" in shown.stdout and "Engineering Manager" in shown.stdout  # the record under review
    assert "deterministic layer" in shown.stdout and "(missing)" in shown.stdout  # its output lacks the record

    approved = await tollgate_cli(env, "review", run_id, "contacts/chunk-00000", "--approve", "--note", "checked")
    assert approved.returncode == 0, approved.stderr
    assert "approved by alice: checked" in approved.stdout

    # a correction the title's rules refuse (a manager is not junior) is refused with the reason; the step waits
    refused_file = tmp_path / "refused.csv"
    refused_file.write_text("id,seniority,department,decision_maker,rationale\n2,junior,engineering,false,manager\n")
    refused = await tollgate_cli(env, "review", run_id, "contacts/chunk-00001", "--correct", str(refused_file))
    assert refused.returncode == 1 and "fails the rules" in refused.stderr and "junior" in refused.stderr, \
        refused.stderr
    assert "contacts/chunk-00001" in {p.step for p in await waiting_steps(client, run_id)}
    fixed_file = tmp_path / "fixed.csv"
    fixed_file.write_text("id,seniority,department,decision_maker,rationale\n2,mid,engineering,false,manager\n")
    fixed = await tollgate_cli(env, "review", run_id, "contacts/chunk-00001", "--correct", str(fixed_file))
    assert fixed.returncode == 0 and "corrected by alice" in fixed.stdout, fixed.stderr

    no_note = await tollgate_cli(env, "review", run_id, "contacts/chunk-00002", "--retry")
    assert no_note.returncode == 1 and "needs a --note" in no_note.stderr, no_note.stderr
    retried = await tollgate_cli(env, "review", run_id, "contacts/chunk-00002", "--retry", "--note",
                                 "answer for id 3 only")
    assert retried.returncode == 0, retried.stderr
    quarantined = await tollgate_cli(env, "review", run_id, "contacts/chunk-00003", "--quarantine",
                                     "--reviewer", "bob")
    assert quarantined.returncode == 0 and "quarantined by bob" in quarantined.stdout, quarantined.stderr
    twice = await tollgate_cli(env, "review", run_id, "contacts/chunk-00003", "--approve")
    assert twice.returncode == 2 and "is not waiting for a review" in twice.stderr

    try:
        result: RunResult = await asyncio.wait_for(handle.result(), 60)
    except TimeoutError:
        raise AssertionError(await waiting_steps(client, run_id)) from None
    report = result.report
    # the retried step read the reviewer's note, got a new budget (attempts 3 and on) and passed
    third = scripted_llm.requests_for(run_id, "contacts/chunk-00002", "contact-enricher")
    assert len(third) == 3 and "answer for id 3 only" in third[-1].prompt
    outcomes = {r.step: (r.outcome, [(x.action, x.reviewer) for x in r.reviews]) for r in report.reviewed}
    assert outcomes == {
        "contacts/chunk-00000": ("approved", [("approve", "alice")]),
        "contacts/chunk-00001": ("corrected", [("correct", "alice")]),
        "contacts/chunk-00002": ("passed", [("retry", "alice")]),
        "contacts/chunk-00003": ("quarantined", [("quarantine", "bob")]),
    }
    assert [(q.step, q.rows, q.ids) for q in report.quarantined] == [("contacts/chunk-00003", 1, ["4"])]
    coverage = {c.branch: (c.covered, c.rows, str(c.share_pct)) for c in report.coverage}
    assert coverage["contacts"] == (4, 5, "80.0") and coverage["opportunities"] == (4, 4, "100.0")
    assert report.summary.enriched_contacts == 4
    markdown = await asyncio.to_thread(Path(result.report_location).read_text)
    assert "4 of 5 rows covered (80.0%)" in markdown and "**contacts/chunk-00003** quarantined" in markdown
    assert "approve by alice" in markdown and "correct by alice" in markdown
    enrichments = await asyncio.to_thread(Path(result.report_location).with_name("enrichments.jsonl").read_text)
    contact_lines = [line for line in enrichments.splitlines() if '"seniority"' in line]
    assert [line.split(",")[:2] for line in contact_lines] == [
        ['{"id":"1"', '"seniority":"junior"'], ['{"id":"2"', '"seniority":"mid"'], ['{"id":"3"', '"seniority":"mid"'],
        ['{"id":"5"', '"seniority":"mid"']]

    events = await events_of(stack.settings.redis_url, run_id, within=10)
    kinds = [(e.kind, e.step) for e in events if e.kind.startswith(("review_", "step_quarantined"))]
    assert sorted(k for k in kinds if k[0] == "review_requested") == [
        ("review_requested", f"contacts/chunk-{i:05d}") for i in range(4)]
    assert len([k for k in kinds if k[0] == "review_resolved"]) == 4
    requested = next(e for e in events if e.kind == "review_requested" and e.step == "contacts/chunk-00001")
    assert requested.body.output and requested.body.output.startswith(f"runs/{run_id}/steps/contacts/chunk-00001/")
    assert any("not in the input" in reason for reason in requested.body.reasons)
    assert ("step_quarantined", "contacts/chunk-00003") in kinds


async def test_an_abort_fails_the_run_with_the_reviewers_reason(client: Client, stack: Stack,
                                                                scripted_llm: ScriptedLlm, run_id: str,
                                                                tmp_path: Path) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
    settings = stack.settings.model_copy(update={"gate_attempts": 1, "on_spent": "review"})
    handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 3), OPPORTUNITIES, run_id)
    await until_waiting(client, run_id, 1)
    status = await tollgate_cli(stack.env, "status", run_id)
    assert "waiting for a review: contacts/chunk-00000" in status.stdout, status.stdout
    aborted = await tollgate_cli(review_env(stack), "review", run_id, "contacts/chunk-00000", "--abort", "--note",
                                 "the export is from the wrong tenant")
    assert aborted.returncode == 0, aborted.stderr
    try:
        await asyncio.wait_for(handle.result(), 30)
        raise AssertionError("the run completed")
    except WorkflowFailureError as error:
        reason = failure_reason(error)
    assert reason.startswith("step contacts/chunk-00000: the reviewer alice aborted the run after 1 rejected")
    assert reason.endswith("the export is from the wrong tenant")


async def test_nobody_deciding_in_time_quarantines_and_insights_can_be_quarantined(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
    scripted_llm.script(run_id, "insights", "insights", ["wrong_figure"])
    settings = stack.settings.model_copy(update={"gate_attempts": 2, "on_spent": "review",
                                                 "review_timeout_seconds": 2.0, "contact_chunk_size": 2})
    handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 3), OPPORTUNITIES, run_id)
    result = await asyncio.wait_for(handle.result(), 60)
    report = result.report
    timed_out = {r.step: r.reviews[0] for r in report.reviewed}
    assert set(timed_out) == {"contacts/chunk-00000", "insights"}
    assert all(r.timed_out and r.action == "quarantine" for r in timed_out.values())
    assert [(q.step, q.ids) for q in report.quarantined] == [("contacts/chunk-00000", ["1", "2"]), ("insights", [])]
    # a report without insights that says why; the enrichments that passed stand
    assert report.insights == [] and report.insights_missing is not None
    assert report.insights_missing.startswith("the insights step was quarantined after 2 rejected attempts")
    assert report.summary.enriched_contacts == 1
    markdown = await asyncio.to_thread(Path(result.report_location).read_text)
    assert "No insights: the insights step was quarantined" in markdown
    # the facts from labels say what they count
    assert "1 of 3 rows covered (33.3%)" in markdown


async def test_the_quarantine_policy_completes_without_the_chunk(client: Client, stack: Stack,
                                                                 scripted_llm: ScriptedLlm, run_id: str,
                                                                 tmp_path: Path) -> None:
    scripted_llm.script(run_id, "opportunities/chunk-00000", "opportunity-risk", ["invent_ids"])
    out = await tollgate_cli(stack.env, "run", str(write_contacts(tmp_path / "c.csv", 3)), str(OPPORTUNITIES),
                             "--run-id", run_id, "--wait", "--on-spent", "quarantine")
    if not scripted_llm.requests_for(run_id, "opportunities/chunk-00000", "opportunity-risk"):
        raise AssertionError("the opportunities chunk asked no model: the test needs an open deal profile")
    assert out.returncode == 0, out.stderr
    assert "coverage: contacts 3/3 (100.0%), opportunities 0/4 (0.0%); 1 step quarantined: " \
        "opportunities/chunk-00000" in out.stdout, out.stdout


async def test_a_waiting_step_survives_the_orchestrator_being_killed(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
    settings = stack.settings.model_copy(update={"gate_attempts": 1, "on_spent": "review"})
    handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 2), OPPORTUNITIES, run_id)
    await until_waiting(client, run_id, 1)
    stack.kill("orchestrator")
    await asyncio.sleep(1.0)
    stack.start("orchestrator")
    pending = await until_waiting(client, run_id, 1, within=30)  # the wait is in the history, not in memory
    assert pending[0].step == "contacts/chunk-00000" and pending[0].attempts == 1
    approved = await tollgate_cli(review_env(stack), "review", run_id, "contacts/chunk-00000", "--approve")
    assert approved.returncode == 0, approved.stderr
    result = await asyncio.wait_for(handle.result(), 60)
    assert [r.outcome for r in result.report.reviewed] == ["approved"]
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 1


def test_a_correction_s_decision_maker_is_a_flag_or_refused(tmp_path: Path) -> None:
    """A CSV correction's ``decision_maker`` reads as the contract reads a flag (true/false, yes/no, 1/0, y/n); a cell
    that is none of them is refused with its row, not taken as false."""
    header = "id,seniority,department,decision_maker,rationale\n"
    fine = tmp_path / "fine.csv"
    fine.write_text(header + "2,mid,engineering, Yes ,manager\n3,mid,engineering,0,engineer\n")
    output = read_correction(fine, "contacts/chunk-00001")
    assert [(e.id, e.decision_maker) for e in output.enrichments] == [("2", True), ("3", False)]  # type: ignore[union-attr]
    for cell in ("maybe", ""):
        bad = tmp_path / "bad.csv"
        bad.write_text(header + f"2,mid,engineering,{cell},manager\n")
        with pytest.raises(ReviewError, match=r"bad.csv: 1 problem; the first: row 1, column 'decision_maker': Input "
                                              r"should be a valid boolean"):
            read_correction(bad, "contacts/chunk-00001")
