"""Progress events: how long from a step's completion to a subscriber's receipt, and how fast one publisher goes.

    uv run python -m benchmarks.progress_events [--chunks 40] [--events 5000]

Latency: a real run (the stack through `tollgate dev`'s launcher, the scripted model server) with a subscriber
following its stream; for every step_succeeded event, receipt time minus the event's own time (the workflow's clock
when the gate passed).
Throughput: one ProgressPublisher writing events back to back to the machine's Redis (each is one Lua call that
numbers it and writes its two stream entries).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from benchmarks.common import export, stack
from client.cli import start_run
from client.watch import follow
from deploy.scripted_model import ScriptedLlm
from shared.events import ProgressEvent
from shared.progress import ProgressPublisher
from shared.settings import Settings
from shared.temporal import connect


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(chunks: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contacts, opportunities = export(folder, chunks * 10, 40)
        llm = ScriptedLlm().start()
        try:
            with stack(folder, llm, contact_chunk_size=10, max_parallel_chunks=4) as (_dev, settings):
                client = await connect(settings)
                run_id = f"latency-{int(time.time())}"
                redis: Redis = Redis.from_url(settings.redis_url)
                delays: list[float] = []

                async def subscribe() -> None:
                    async for event in follow(redis, run_id, block_ms=100):
                        if event.kind == "step_succeeded":
                            delays.append((datetime.now(UTC) - event.at).total_seconds() * 1000)

                subscriber = asyncio.ensure_future(subscribe())
                handle = await start_run(client, settings, contacts, opportunities, run_id)
                await handle.result()
                await asyncio.wait_for(subscriber, 30)
                await redis.aclose()
                return delays
        finally:
            llm.stop()


async def throughput(events: int) -> float:
    publisher = ProgressPublisher(Settings().redis_url)
    run_id = f"throughput-{int(time.time())}"
    now = datetime.now(UTC)
    started = time.perf_counter()
    for index in range(events):
        await publisher.publish(ProgressEvent(event_id=f"{run_id}:{index}", run_id=run_id, kind="step_started",
                                              step=f"contacts/chunk-{index:05d}", attempt=1, at=now))
    elapsed = time.perf_counter() - started
    await publisher.redis.delete(f"tollgate:run:{run_id}")
    await publisher.close()
    return events / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    delays = await latency(args.chunks)
    print(f"step completion -> subscriber receipt, {len(delays)} steps: p50 {statistics.median(delays):.1f} ms, "
          f"p99 {percentile(delays, 0.99):.1f} ms, max {max(delays):.1f} ms")
    rate = await throughput(args.events)
    print(f"one publisher, {args.events} events back to back: {rate:,.0f} events/s", flush=True)
    os._exit(0)  # the temporalio client may crash at interpreter exit (sdk-python#300)


if __name__ == "__main__":
    asyncio.run(main())
