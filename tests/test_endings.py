"""Every run ends, however it ends: spent budgets in many siblings at once, a cancel, a terminate, a timeout.

A run that never ends is the worst failure a durable system can have; these tests hold every ending to a deadline
and check that the workflow tasks were never rejected on the way (the symptom of commands issued after the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from shared.contracts import RunResult
from shared.events import ProgressEvent
from shared.failures import failure_reason
from shared.temporal import connect
from tests.harness import ARTICLE, ROOT, Stack, make_stack, tollgate_cli
from tests.test_progress import events_of

OPPORTUNITIES = ARTICLE / "crm_opportunities.csv"


DEALS_ROWS = 4  # the article's opportunities, one chunk each below


def contacts_rows(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1


def write_contacts(path: Path, count: int) -> Path:
    rows = [f"{i},Person {i},Company {i % 4},Engineering Manager,2024-01-01" for i in range(1, count + 1)]
    path.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    return path


async def workflow_task_failures(client: Client, workflow_id: str) -> list[str]:
    """Why workflow tasks of this workflow failed, if any did. An unhandled-command rejection is left out: it is
    the server's ordinary answer to a workflow that tried to close while new events were arriving (the task is
    retried at once with those events), not a workflow error."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [e.workflow_task_failed_event_attributes.failure.message for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and e.workflow_task_failed_event_attributes.cause
            != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND]


async def ended_reason(handle: WorkflowHandle[object, RunResult], within: float) -> str:
    try:
        await asyncio.wait_for(handle.result(), timeout=within)
    except WorkflowFailureError as error:
        return failure_reason(error)
    raise AssertionError("the run completed; it was meant to fail")


def spent_steps_named(reason: str) -> set[str]:
    return set(re.findall(r"step ((?:contacts|opportunities)/chunk-\d{5}) was rejected 2 times", reason))


async def run_to_failure(client: Client, stack: Stack, run_id: str, contacts: Path, chunks_per_batch: int = 50
                         ) -> tuple[str, list[ProgressEvent]]:
    settings = stack.settings.model_copy(update={
        "contact_chunk_size": 1, "opportunity_chunk_size": 1, "max_parallel_chunks": 15, "gate_attempts": 2,
        "chunks_per_batch": chunks_per_batch})
    live = asyncio.ensure_future(events_of(settings.redis_url, run_id, within=60))
    started = time.monotonic()
    handle = await start_run(client, settings, contacts, OPPORTUNITIES, run_id)
    reason = await ended_reason(handle, within=60)
    assert time.monotonic() - started < 60
    # every fan-out settled before it failed: no workflow task was rejected anywhere. A branch of one batch is gated
    # in the run itself; a branch of several starts a child per batch and stops at its first failed one
    workflows = [w.id async for w in client.list_workflows(f"WorkflowId STARTS_WITH '{run_id}'")]
    batches = {branch: -(-chunks // chunks_per_batch) for branch, chunks in (("contacts", contacts_rows(contacts)),
                                                                             ("opportunities", DEALS_ROWS))}
    assert sorted(workflows) == [run_id, *(f"{run_id}.{b}.batch-0000" for b, n in batches.items() if n > 1)]
    for workflow_id in workflows:
        assert await workflow_task_failures(client, workflow_id) == [], workflow_id
    events = await live
    assert events[-1].kind == "run_failed" and events[-1].body.summary == reason[:2000]
    return reason, events


@pytest.mark.parametrize("chunks_per_batch", [50, 5], ids=["one-batch", "first-of-three-batches"])
async def test_every_chunk_of_a_batch_spending_its_budget_at_once_ends_the_run(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path,
        chunks_per_batch: int) -> None:
    scripted_llm.script(run_id, "*", "contact-enricher", ["invent_ids"])
    reason, events = await run_to_failure(client, stack, run_id, write_contacts(tmp_path / "c.csv", 15),
                                          chunks_per_batch)

    # The first step to spend its budget cancels the siblings still in flight; every step the error names did
    # spend its budget. A progress event is published at least once (a workflow task the server turned away may
    # have published already), so events can show a step_failed for a step that was cancelled in the task that
    # counted: the history is the record, not the events.
    named = spent_steps_named(reason)
    assert named and reason.startswith(f"{len(named)} steps failed: " if len(named) > 1 else "step contacts/")
    for step in named:
        assert len(scripted_llm.requests_for(run_id, step, "contact-enricher")) == 2, step
    assert named & {e.step for e in events if e.kind == "step_failed"}
    assert scripted_llm.requests_for(run_id, "insights") == []


async def test_both_branches_spending_budgets_at_once_end_the_run(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    scripted_llm.script(run_id, "*", "contact-enricher", ["invent_ids"])
    scripted_llm.script(run_id, "*", "opportunity-risk", ["invent_ids"])
    reason, _events = await run_to_failure(client, stack, run_id, write_contacts(tmp_path / "c.csv", 15))

    # The first branch to fail cancels the other; the steps named are the ones that did spend their budget (a
    # step cancelled in flight is not named: it did not fail).
    named = spent_steps_named(reason)
    assert named
    for step in named:
        agent = "contact-enricher" if step.startswith("contacts") else "opportunity-risk"
        assert len(scripted_llm.requests_for(run_id, step, agent)) == 2, step


async def test_a_cancelled_run_ends_cancelled_and_watchers_stop(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    # past the stack's 3 s client timeout, again and again: the step stays in flight
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:5"])
    handle = await start_run(client, stack.settings, ARTICLE / "crm_contacts.csv", OPPORTUNITIES, run_id)
    watching = asyncio.ensure_future(tollgate_cli(stack.env, "watch", run_id, seconds=60))
    waiting = asyncio.ensure_future(tollgate_cli(stack.env, "result", run_id, "--wait", seconds=60))
    await asyncio.sleep(1.0)
    cancelled = await tollgate_cli(stack.env, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"run {run_id}: cancellation requested" in cancelled.stdout

    with_reason = await asyncio.wait_for(asyncio.gather(watching, waiting), 60)
    watched, waited = with_reason
    assert watched.returncode == 1 and "run cancelled at analysis" in watched.stdout, watched.stdout
    assert waited.returncode == 1 and f"run {run_id} was cancelled" in waited.stderr
    description = await handle.describe()
    assert description.status is not None and description.status.name == "CANCELED"
    events = await events_of(stack.settings.redis_url, run_id, within=10)
    assert events[-1].kind == "run_cancelled"
    assert await workflow_task_failures(client, run_id) == []
    again = await tollgate_cli(stack.env, "cancel", run_id)
    assert again.returncode == 2 and "is not running (it is canceled)" in again.stderr


async def test_a_step_that_fails_after_its_cancel_leaves_the_run_cancelled(
        temporal_address: str, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    # A cancelled step is waited for until its worker stops it, which it learns at its next heartbeat (the first a
    # second into the model call, then every 2 s). Here the call times out (2 s) before that: the attempt fails after
    # the cancel was asked for. The run still ends cancelled, the step is not retried, and nothing calls it a failure.
    stack = make_stack(temporal_address, scripted_llm, tmp_path, TOLLGATE_LLM_TIMEOUT_SECONDS="2")
    try:
        client = await connect(stack.settings)
        scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:5"])
        handle = await start_run(client, stack.settings, ARTICLE / "crm_contacts.csv", OPPORTUNITIES, run_id)
        while not scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.3)  # past the attempt's first heartbeat (at 1 s), well before its next (at 3 s)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as ended:
            await asyncio.wait_for(handle.result(), 30)
        assert "cancel" in str(ended.value.cause).lower(), ended.value.cause
        assert (await handle.describe()).status.name == "CANCELED"  # type: ignore[union-attr]
        events = await events_of(stack.settings.redis_url, run_id, within=10)
        assert events[-1].kind == "run_cancelled"
        history = await handle.fetch_history()  # the record (the worker's own event may come after the last one)
        kinds = [e.event_type for e in history.events]
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED in kinds, "the attempt did fail after the cancel"
        assert kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED) < kinds.index(
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
        assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 1
        assert await workflow_task_failures(client, run_id) == []
    finally:
        stack.stop()


async def test_a_terminated_run_ends_watch_follow_and_wait(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    # past the stack's 3 s client timeout, again and again: the step stays in flight
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:5"])
    handle = await start_run(client, stack.settings, ARTICLE / "crm_contacts.csv", OPPORTUNITIES, run_id)
    watching = asyncio.ensure_future(tollgate_cli(stack.env, "watch", run_id, seconds=60))
    await asyncio.sleep(1.0)
    await handle.terminate("operator stopped it")
    watched = await asyncio.wait_for(watching, 60)
    assert watched.returncode == 1
    assert f"run {run_id} ended: terminated (by Temporal" in watched.stdout, watched.stdout
    result = await tollgate_cli(stack.env, "result", run_id)
    assert result.returncode == 1 and f"run {run_id} was terminated" in result.stderr


async def test_a_step_that_times_out_names_the_step_the_activity_and_the_limit(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "opportunities/chunk-00000", "opportunity-risk", ["slow:10"])
    settings = stack.settings.model_copy(update={"analysis_timeout_seconds": 1.5, "activity_max_attempts": 2})
    handle = await start_run(client, settings, ARTICLE / "crm_contacts.csv", OPPORTUNITIES, run_id)
    reason = await ended_reason(handle, within=60)
    assert reason.startswith("step opportunities/chunk-00000: activity assess_opportunity_chunk gave up after 2 "
                             "attempts (its retry limit); the last attempt hit its "), reason
    assert "timeout" in reason
    # an attempt cut short by its timeout may not reach the model at all
    assert 1 <= len(scripted_llm.requests_for(run_id, "opportunities/chunk-00000", "opportunity-risk")) <= 2
    # the struggle was visible while it lasted: each attempt's failure and the retry are progress events
    events = await events_of(stack.settings.redis_url, run_id, within=20)
    retried = [e for e in events if e.kind == "activity_retry" and e.step == "opportunities/chunk-00000"]
    assert [(e.body.activity, e.body.activity_attempt) for e in retried] == [("assess_opportunity_chunk", 2)]
    failed = [e for e in events if e.kind == "activity_failed" and e.step == "opportunities/chunk-00000"]
    assert [e.body.summary for e in failed][:1] == ["assess_opportunity_chunk attempt 1 timed out"]
    status = await tollgate_cli(stack.env, "status", run_id)
    assert "opportunities: 0/1 chunks done, 0 rejections, 0 retries, " in status.stdout
    assert re.search(r"\d+ failed attempts?\b", status.stdout), status.stdout


async def test_ctrl_c_of_run_wait_stops_waiting_only_and_says_how_to_follow(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:2.5"])
    waiting = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "client.cli", "run", str(ARTICLE / "crm_contacts.csv"),
         str(OPPORTUNITIES), "--wait", "--run-id", run_id], env=stack.env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):  # until the run exists
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(run_id).describe()
                break
            await asyncio.sleep(0.1)
        waiting.send_signal(signal.SIGINT)
        _out, err = await asyncio.to_thread(waiting.communicate, timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 130
    assert (f"stopped waiting; run {run_id} goes on. Follow it with `tollgate watch {run_id}`, fetch its report with "
            f"`tollgate result {run_id} --wait`, or stop it with `tollgate cancel {run_id}`") in err
    # and it does go on, to the end
    await asyncio.wait_for(client.get_workflow_handle(run_id).result(), 60)
