"""The documented FastStream consumer, against the session's own Redis, and the committed AsyncAPI document."""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from datetime import UTC, datetime

from examples import progress_consumer as example
from shared.events import ALL_RUNS_STREAM, EventBody, EventKind, ProgressEvent
from shared.progress import ProgressPublisher
from shared.settings import get_settings
from tests.harness import ROOT


async def test_example_consumer_group_receives_and_acknowledges(redis_url: str) -> None:
    run_id = f"consumer-{uuid.uuid4().hex[:8]}"
    importlib.reload(example)  # its broker reads TOLLGATE_REDIS_URL at import: the session's own Redis
    publisher = ProgressPublisher(get_settings().redis_url)
    assert get_settings().redis_url == redis_url
    await example.broker.start()
    try:
        verdict = EventBody(passed=False, layer="ai", reasons=["a reason"])
        kinds: list[EventKind] = ["run_started", "gate_verdict", "run_completed"]
        for seq, kind in enumerate(kinds):
            await publisher.publish(ProgressEvent(
                event_id=f"{run_id}:{seq}", run_id=run_id, kind=kind, at=datetime.now(UTC),
                body=verdict if kind == "gate_verdict" else EventBody(),
            ))
        for _ in range(200):
            mine = [e for e in example.received if e.run_id == run_id]
            if len(mine) == 3:
                break
            await asyncio.sleep(0.05)
        assert [e.kind for e in mine] == ["run_started", "gate_verdict", "run_completed"]
        assert [e.seq for e in mine] == [1, 2, 3]
        pending = await publisher.redis.xpending(ALL_RUNS_STREAM, "progress-consumer")
        assert pending["pending"] == 0  # every delivered event was acknowledged
    finally:
        await example.broker.stop()
        await publisher.close()


def test_committed_asyncapi_document_is_current() -> None:
    fresh = json.loads(example.app.schema.to_specification().to_json())
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    for part in ("channels", "operations", "components"):
        assert fresh[part] == committed[part], f"docs/asyncapi.json is stale ({part}): regenerate it"


async def test_overflowing_buffer_counts_what_it_drops() -> None:
    publisher = ProgressPublisher("redis://127.0.0.1:1/0", buffer_size=2)  # nothing listens there
    now = datetime.now(UTC)
    lost = [publisher.submit(ProgressEvent(event_id=f"r:{i}", run_id="r", kind="step_started", at=now))
            for i in range(5)]
    await asyncio.sleep(0.2)  # the deliverer tries, fails, and keeps the two it holds
    assert lost == [0, 0, 1, 2, 3] and publisher.lost("r") == 3 and publisher.backlog == 2
    assert publisher.lost("another-run") == 0
    await publisher.close(drain_seconds=0)


async def test_a_batch_publishes_each_id_once_in_order(redis_url: str) -> None:
    # the buffer goes out in batches; within a batch as across them, an id is published once and the run's sequence
    # numbers follow the order events were submitted, with no gap
    from client.watch import decode
    from shared.events import run_stream

    run_id = f"batch-{uuid.uuid4().hex[:8]}"
    publisher = ProgressPublisher(redis_url)
    now = datetime.now(UTC)

    def event(number: int) -> ProgressEvent:
        return ProgressEvent(event_id=f"{run_id}:{number}", run_id=run_id, kind="step_started", at=now)

    try:
        assert await publisher.publish(event(0))
        for number in [1, 2, 2, 0, *range(3, 150), 7]:  # a repeat within the batch, one published before, one late
            publisher.submit(event(number))
        assert await publisher.drain(10)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await publisher.redis.xrange(
            run_stream(run_id))  # type: ignore[assignment]
        published = [decode(fields) for _id, fields in entries]  # raw entries: nothing dropped on the way
        assert [e.event_id for e in published] == [f"{run_id}:{n}" for n in range(150)]
        assert [e.seq for e in published] == list(range(1, 151))
        assert publisher.published == 150 and publisher.duplicates == 3
    finally:
        await publisher.close()


async def test_every_run_stream_and_event_id_expires_with_the_retention(redis_url: str) -> None:
    """A run's stream and its events' dedupe marks live as long as the retention (from the run's last event), so
    Redis does not keep every run forever; the stream of all runs is bounded by length instead. Events of two runs
    in one batch: both streams get their expiry."""
    from datetime import timedelta

    from shared.events import run_stream

    runs = [f"ttl-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    publisher = ProgressPublisher(redis_url, retention=timedelta(minutes=10))
    now = datetime.now(UTC)
    events = [ProgressEvent(event_id=f"{run}:{n}", run_id=run, kind="step_started", at=now)
              for n in range(3) for run in runs]
    try:
        assert await publisher.publish_many(events) == len(events)
        for run in runs:
            assert 0 < await publisher.redis.ttl(run_stream(run)) <= 600
            assert await publisher.redis.xlen(run_stream(run)) == 3
            assert 0 < await publisher.redis.ttl(f"tollgate:event:{run}:2") <= 600
        assert await publisher.redis.ttl(ALL_RUNS_STREAM) == -1  # no expiry: trimmed by length (all_maxlen)
    finally:
        await publisher.close()


async def test_publishers_of_one_run_write_its_numbers_in_order(redis_url: str) -> None:
    # the orchestrator and every worker publish to a run's stream at once, each from its own process: a number
    # taken by one must be written before any later number another takes, or a reader sees 15 before 14
    from client.watch import decode
    from shared.events import run_stream

    run_id = f"race-{uuid.uuid4().hex[:8]}"
    publishers = [ProgressPublisher(redis_url) for _ in range(4)]
    now = datetime.now(UTC)

    async def announce(index: int, publisher: ProgressPublisher) -> None:
        for number in range(60):
            await publisher.publish(ProgressEvent(event_id=f"{run_id}:{index}:{number}", run_id=run_id,
                                                  kind="activity_retry", at=now))

    try:
        await asyncio.gather(*(announce(index, publisher) for index, publisher in enumerate(publishers)))
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await publishers[0].redis.xrange(
            run_stream(run_id))  # type: ignore[assignment]
        published = [decode(fields) for _id, fields in entries]
        assert [e.seq for e in published] == list(range(1, 4 * 60 + 1))
        for index in range(4):  # and each publisher's own events in the order it published them
            assert [e.event_id for e in published if e.event_id.startswith(f"{run_id}:{index}:")] == [
                f"{run_id}:{index}:{number}" for number in range(60)]
    finally:
        for publisher in publishers:
            await publisher.close()


async def test_a_number_claimed_by_an_earlier_release_is_written_under_it(redis_url: str) -> None:
    # a publisher of the release before this one took a number in one call and wrote the entry in another; one
    # that died between them left the mark "N:claimed", and the event, announced again, goes out under N
    from client.watch import decode
    from shared.events import run_stream

    run_id = f"claimed-{uuid.uuid4().hex[:8]}"
    publisher = ProgressPublisher(redis_url)
    now = datetime.now(UTC)
    try:
        await publisher.redis.set(f"tollgate:seq:{run_id}", 1)
        await publisher.redis.set(f"tollgate:event:{run_id}:0", "1:claimed", ex=60)
        written = await publisher.publish_many([ProgressEvent(event_id=f"{run_id}:{n}", run_id=run_id,
                                                              kind="step_started", at=now) for n in (0, 1, 0)])
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await publisher.redis.xrange(
            run_stream(run_id))  # type: ignore[assignment]
        assert written == 2 and publisher.duplicates == 1
        assert [(e.event_id, e.seq) for e in (decode(f) for _id, f in entries)] == [(f"{run_id}:0", 1),
                                                                                    (f"{run_id}:1", 2)]
    finally:
        await publisher.close()
