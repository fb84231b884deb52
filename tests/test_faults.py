"""The fault matrix: each fault ends with the run correct (or failed with a clear reason), no completed step run
twice, one report. Faults already proven elsewhere: a killed analyzer (test_crash_recovery), a killed orchestrator
while a step waits (test_review), Redis stopped and restarted (test_progress), model errors 500 and 429 with
Retry-After and malformed JSON (test_pipeline), a step that times out every attempt (test_endings)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from temporalio.client import Client

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from shared.contracts import RunResult
from shared.events import ProgressEvent
from shared.progress import ProgressPublisher
from shared.temporal import connect
from tests.harness import ARTICLE, Stack, make_stack, start_temporal, tollgate_cli
from tests.test_progress import events_of

CONTACTS, DEALS = ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv"


async def until(condition: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.1)


def one_report(result: RunResult) -> None:
    assert result.report.summary.enriched_contacts == 5 and result.report.summary.assessed_opportunities == 4


async def test_validator_killed_mid_step(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                         run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "validator", ["slow:2", "correct"])
    handle = await start_run(client, stack.settings, CONTACTS, DEALS, run_id)
    await until(lambda: bool(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "validator")))
    stack.kill("validator")  # kill -9 with the verdict in flight
    stack.start("validator")
    result = await asyncio.wait_for(handle.result(), 60)
    one_report(result)
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 1, \
        "the analysis that had completed was not run again"
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "validator")) == 2


async def test_temporal_server_killed_and_restarted_on_its_database(scripted_llm: ScriptedLlm, run_id: str,
                                                                    tmp_path: Path) -> None:
    (tmp_path / "temporal").mkdir()
    db = tmp_path / "temporal" / "temporal.db"
    server, address = start_temporal(db)
    port = int(address.rsplit(":", 1)[1])
    stack = make_stack(address, scripted_llm, tmp_path)
    try:
        scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:2", "correct"])
        client = await connect(stack.settings)
        await start_run(client, stack.settings, CONTACTS, DEALS, run_id)
        await until(lambda: bool(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")))
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        await asyncio.sleep(2)
        server, _ = start_temporal(db, port)
        done = await tollgate_cli(stack.env, "result", run_id, "--wait", seconds=90)
        assert done.returncode == 0, done.stdout + done.stderr + stack.log_text()[-2000:]
        assert "enriched 5 contacts" in done.stdout
    finally:
        stack.stop()
        server.terminate()
        server.wait(10)
    events = await events_of(stack.settings.redis_url, run_id, within=10)
    assert events[-1].kind == "run_completed"


async def test_a_model_endpoint_that_streams_forever_is_cut_off_and_the_step_recovers(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["trickle", "correct"])
    handle = await start_run(client, stack.settings, CONTACTS, DEALS, run_id)
    result = await asyncio.wait_for(handle.result(), 60)
    one_report(result)
    events = await events_of(stack.settings.redis_url, run_id, within=10)
    failed = [e for e in events if e.kind == "activity_failed"]
    assert failed and "had no complete answer within 3 s" in (failed[0].body.summary or "")


async def test_sigterm_lets_an_activity_in_flight_finish(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                         run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:2", "correct"])
    handle = await start_run(client, stack.settings, CONTACTS, DEALS, run_id)
    await until(lambda: bool(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")))
    analyzers = stack.processes.pop("analyzer")
    for analyzer in analyzers:
        analyzer.send_signal(signal.SIGTERM)
    try:
        for analyzer in analyzers:
            assert await asyncio.to_thread(analyzer.wait, 10) == 0, "the analyzer did not stop within its grace"
    finally:
        stack.start("analyzer")
    result = await asyncio.wait_for(handle.result(), 60)
    one_report(result)
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 1, \
        "the step in flight finished during the graceful shutdown; nothing ran again"


async def test_an_unwritable_store_is_waited_out(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                 run_id: str) -> None:
    steps = Path(stack.settings.artifact_root) / "runs" / run_id / "steps"
    steps.parent.mkdir(parents=True, exist_ok=True)
    steps.write_text("not a directory")  # every output write fails until it is gone
    handle = await start_run(client, stack.settings, CONTACTS, DEALS, run_id)
    events = asyncio.ensure_future(events_of(stack.settings.redis_url, run_id, within=60))
    await asyncio.sleep(3)
    steps.unlink()
    result = await asyncio.wait_for(handle.result(), 60)
    one_report(result)
    failures = [e for e in await events if e.kind == "activity_failed"]
    assert failures, "the store's failure showed as failed attempts"


async def test_the_publisher_survives_an_error_that_is_not_redis(redis_url: str, run_id: str) -> None:
    publisher = ProgressPublisher(redis_url)
    original = publisher.publish_many
    calls = {"n": 0}

    async def flaky(events: Sequence[ProgressEvent]) -> int:
        calls["n"] += 1
        if any(event.step == "poison" for event in events) or calls["n"] == 1:
            raise ValueError("not a Redis error")
        return await original(events)

    publisher.publish_many = flaky  # type: ignore[method-assign]
    from datetime import UTC, datetime

    def event(number: int, step: str = "") -> ProgressEvent:
        return ProgressEvent(event_id=f"{run_id}:{number}", run_id=run_id, kind="step_started", step=step,
                             at=datetime.now(UTC))

    try:
        publisher.submit(event(1))
        publisher.submit(event(2, "poison"))  # fails every time: dropped after a few tries, counted lost
        publisher.submit(event(3))
        assert await publisher.drain(30)
        assert publisher.published == 2 and publisher.lost(run_id) == 1
    finally:
        await publisher.close()
