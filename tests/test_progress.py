"""Progress events on the machine's real Redis (and on one a test starts and stops): order, replay, dedupe, outages."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from client.cli import start_run
from client.watch import follow
from deploy.scripted_model import ScriptedLlm
from shared.events import ProgressEvent
from shared.temporal import connect
from tests import harness
from tests.harness import ARTICLE, Stack, free_port, make_stack, tollgate_cli


def write_contacts(path: Path, count: int) -> Path:
    rows = [f"{i},Person {i},Company {i % 4},{'CEO' if i % 9 == 0 else 'Engineering Manager'},2024-01-01"
            for i in range(1, count + 1)]
    path.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    return path


async def events_of(redis_url: str, run_id: str, within: float = 60) -> list[ProgressEvent]:
    redis: Redis = Redis.from_url(redis_url)
    try:
        return await asyncio.wait_for(_collect(redis, run_id), timeout=within)
    finally:
        await redis.aclose()


async def _collect(redis: Redis, run_id: str) -> list[ProgressEvent]:
    return [event async for event in follow(redis, run_id, block_ms=200)]


def assert_complete_sequence(events: list[ProgressEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "a gap or a reordering"
    assert len({e.event_id for e in events}) == len(events), "a duplicate event id"
    assert events[0].kind == "run_started" and events[1].kind == "ingest_done"
    assert events[-1].kind in ("run_completed", "run_failed")


async def test_every_transition_in_order_live_and_replayed(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                           run_id: str, tmp_path: Path) -> None:
    scripted_llm.script(run_id, "insights", "insights", ["wrong_figure", "correct"])
    scripted_llm.script(run_id, "contacts/chunk-00001", "validator", ["ai_reject", "correct"])
    live = asyncio.ensure_future(events_of(stack.settings.redis_url, run_id))  # subscribed before the run exists
    settings = stack.settings.model_copy(update={"contact_chunk_size": 5})
    handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 12),
                             ARTICLE / "crm_opportunities.csv", run_id)
    await asyncio.wait_for(handle.result(), 90)
    events = await live
    late = await events_of(stack.settings.redis_url, run_id)  # a subscriber arriving after the end
    assert [e.model_dump() for e in late] == [e.model_dump() for e in events]

    assert_complete_sequence(events)
    assert events[-1].kind == "run_completed" and events[-1].body.events_lost == 0
    plans = {p.branch: (p.rows, p.chunks) for p in events[1].body.plans}
    assert plans == {"contacts": (12, 3), "opportunities": (4, 1)}
    steps = {e.step for e in events if e.kind == "step_succeeded"}
    assert steps == {"contacts/chunk-00000", "contacts/chunk-00001", "contacts/chunk-00002",
                     "opportunities/chunk-00000", "insights"}
    verdicts = [(e.step, e.attempt, e.body.passed, e.body.layer) for e in events if e.kind == "gate_verdict"]
    assert ("insights", 1, False, "deterministic") in verdicts and ("insights", 2, True, "ai") in verdicts
    assert ("contacts/chunk-00001", 1, False, "ai") in verdicts
    [retry] = [e for e in events if e.kind == "retry_with_feedback" and e.step == "insights"]
    assert retry.attempt == 2 and "states $76,000, which none of its facts shows" in retry.body.reasons[0]
    for event in events:  # within a step, the transitions come in their order
        if event.kind == "step_succeeded":
            started = next(e for e in events if e.kind == "step_started" and e.step == event.step
                           and e.attempt == event.attempt)
            assert started.seq < event.seq


async def test_failed_run_ends_with_run_failed(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                               run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
    handle = await start_run(client, stack.settings, ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv",
                             run_id)
    with pytest.raises(Exception):  # noqa: B017 - the workflow's failure; the event is what this test is about
        await asyncio.wait_for(handle.result(), 90)
    events = await events_of(stack.settings.redis_url, run_id)
    assert_complete_sequence(events)
    assert [e.kind for e in events if e.step == "contacts/chunk-00000"].count("step_failed") == 1
    assert events[-1].kind == "run_failed"
    assert "step contacts/chunk-00000 was rejected 3 times" in (events[-1].body.summary or "")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    yield port, processes
    for process in processes:
        if process.poll() is None:
            process.kill()


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    return harness.start_redis(port, folder, appendonly=True)  # it must come back with what it had on disk


async def test_redis_outage_loses_nothing(temporal_address: str, scripted_llm: ScriptedLlm, run_id: str,
                                          tmp_path: Path,
                                          own_redis: tuple[int, list[subprocess.Popen[bytes]]]) -> None:
    port, processes = own_redis
    processes.append(start_redis(port, tmp_path))
    stack = make_stack(temporal_address, scripted_llm, tmp_path, TOLLGATE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        for index in range(6):
            scripted_llm.script(run_id, f"contacts/chunk-{index:05d}", "contact-enricher", ["slow:0.5"])
        client = await connect(stack.settings)
        settings = stack.settings.model_copy(update={"contact_chunk_size": 4, "max_parallel_chunks": 1})
        handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 24),
                                 ARTICLE / "crm_opportunities.csv", run_id)
        deadline = time.monotonic() + 30
        while not scripted_llm.requests_for(run_id, agent="contact-enricher"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        processes[0].terminate()  # Redis goes away mid-run ...
        processes[0].wait(10)
        await asyncio.sleep(2)
        processes.append(start_redis(port, tmp_path))  # ... and comes back with what it had on disk
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.report.summary.enriched_contacts == 24  # the run neither failed nor stalled
        events = await events_of(f"redis://127.0.0.1:{port}/0", run_id)
        assert_complete_sequence(events)
        assert events[-1].kind == "run_completed" and events[-1].body.events_lost == 0
        assert len([e for e in events if e.kind == "step_succeeded"]) == 6 + 1 + 1
        assert "Redis unreachable" in stack.log_text()  # the outage really happened while events were pending
    finally:
        stack.stop()


async def test_killed_workers_dedupe_to_one_event_per_id(temporal_address: str, scripted_llm: ScriptedLlm,
                                                         run_id: str, tmp_path: Path) -> None:
    stack = make_stack(temporal_address, scripted_llm, tmp_path)
    try:
        for index in range(8):
            scripted_llm.script(run_id, f"contacts/chunk-{index:05d}", "contact-enricher", ["slow:0.4"])
        client = await connect(stack.settings)
        settings = stack.settings.model_copy(update={"contact_chunk_size": 3, "max_parallel_chunks": 2})
        handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 24),
                                 ARTICLE / "crm_opportunities.csv", run_id)
        for service in ("analyzer", "orchestrator"):
            deadline = time.monotonic() + 30
            seen = len(scripted_llm.requests_for(run_id, agent="validator"))
            while len(scripted_llm.requests_for(run_id, agent="validator")) < seen + 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            stack.kill(service)  # kill -9 mid-run: in-flight steps and workflow tasks run again elsewhere
            stack.start(service)
        await asyncio.wait_for(handle.result(), 120)
        events = await events_of(stack.settings.redis_url, run_id)
        assert_complete_sequence(events)
        succeeded = [e.step for e in events if e.kind == "step_succeeded"]
        assert sorted(succeeded) == sorted({*succeeded}) and len(succeeded) == 8 + 1 + 1
    finally:
        stack.stop()


async def test_watch_prints_totals_and_exits_with_the_run_status(client: Client, stack: Stack,
                                                                 scripted_llm: ScriptedLlm, run_id: str,
                                                                 tmp_path: Path) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00002", "contact-enricher", ["invent_ids", "correct"])
    settings = stack.settings.model_copy(update={"contact_chunk_size": 4})
    handle = await start_run(client, settings, write_contacts(tmp_path / "c.csv", 14),
                             ARTICLE / "crm_opportunities.csv", run_id)
    watched = await tollgate_cli(stack.env, "watch", run_id)
    await handle.result()
    assert watched.returncode == 0, watched.stdout + watched.stderr
    out = watched.stdout
    assert f"#1 run {run_id} started" in out
    assert "#2 ingested: contacts 14 rows in 4 chunks, opportunities 4 rows in 1 chunk" in out
    # contacts 10, 11 and 12 share a title, asked of the model once (for 10): the invented id leaves all three out
    assert ("gate contacts/chunk-00002 attempt 1 rejected by the deterministic layer: contact id 10 was not answered; "
            "answer every id once; contact id 11 was not answered; answer every id once; contact id 12 was not "
            "answered; answer every id once") in out
    assert "contacts: 4/4 chunks done, 1 rejection, 1 retry" in out
    assert "opportunities: 1/1 chunks done, 0 rejections, 0 retries" in out
    assert "insights: 1/1 steps done, 0 rejections, 0 retries" in out
