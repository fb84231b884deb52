"""Where a run's time goes that is not the model's: the timeline of a warm run of the article's 5/4 example.

    uv run python -m benchmarks.timeline [--warm 3] [--latency 1.0]

Starts the stack as `make bench` does (the scripted model answering in ``--latency`` seconds), runs the example
once to warm the workers and ``--warm`` times more, and prints the last run: every event of its history (the
server's clock) beside every model call as the model server saw it (the machine's monotonic clock), both relative
to the client's start, then each stretch of the run during which no model call was in flight, longest first. Those
stretches add up to the run's overhead (wall time minus LLM time, docs/benchmarks.md, Method). Figures, not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from benchmarks.common import ARTICLE, busy_seconds, in_flight, stack
from client.cli import start_run
from deploy.scripted_model import Request, ScriptedLlm
from shared.contracts import RunResult
from shared.temporal import connect


@dataclass(frozen=True)
class Mark:
    at: float  # seconds from the client's start
    what: str


def _history_marks(events: list[HistoryEvent], wall_start: float) -> list[Mark]:
    marks = []
    for event in events:
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
        detail = ""
        name = event.WhichOneof("attributes")
        attributes: Any = getattr(event, name) if name else None
        if hasattr(attributes, "activity_type"):
            detail = attributes.activity_type.name
        elif hasattr(attributes, "marker_name"):
            detail = attributes.marker_name
        at = event.event_time.seconds + event.event_time.nanos / 1e9 - wall_start
        marks.append(Mark(at, f"{event.event_id:4d} {kind} {detail}".rstrip()))
    return marks


def _call_marks(calls: list[Request], start: float) -> list[Mark]:
    marks = []
    for call in calls:
        marks.append(Mark(call.received - start, f"     model call in:  {call.step} ({call.agent})"))
        marks.append(Mark(call.answered - start, f"     model call out: {call.step} ({call.agent})"))
    return marks


def idle_stretches(calls: list[Request], start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of [start, end] with no model call in flight (the gaps between ``in_flight``'s), as (from, to)
    relative to ``start``: with ``busy_seconds`` over the same calls they add up to ``end - start``."""
    edges = [start, *(edge for span in in_flight(calls, start, end) for edge in span), end]
    return [(begin - start, finish - start) for begin, finish in zip(edges[::2], edges[1::2], strict=True)
            if finish > begin]


async def trace(warm: int, latency: float, folder: Path) -> None:
    llm = ScriptedLlm(latency=latency).start()
    try:
        with stack(folder, llm, contact_chunk_size=200, opportunity_chunk_size=200) as (_dev, settings):
            client = await connect(settings)
            for n in range(warm + 1):
                handle = await start_run(client, settings, *ARTICLE, f"timeline-warm-{n}")
                await handle.result()
            wall_start, start = time.time(), time.monotonic()
            handle = await start_run(client, settings, *ARTICLE, "timeline")
            result: RunResult = await handle.result()
            end = time.monotonic()
            events = [event async for event in handle.fetch_history_events()]
    finally:
        llm.stop()
    calls = [r for r in llm.requests if r.run == "timeline"]
    busy = busy_seconds(calls, start, end)
    marks = sorted([*_history_marks(events, wall_start), *_call_marks(calls, start),
                    Mark(end - start, "     result at the client")], key=lambda m: m.at)
    previous = 0.0
    for mark in marks:
        print(f"{mark.at * 1000:9.1f} ms (+{(mark.at - previous) * 1000:6.1f})  {mark.what}")
        previous = mark.at
    wall = end - start
    print(f"\nrun {wall:.3f} s, model calls in flight {busy:.3f} s ({len(calls)} calls): {wall / busy:.3f}x, "
          f"{(wall - busy) * 1000:.0f} ms not the model's; {len(events)} history events; report of "
          f"{result.report.summary.enriched_contacts} contacts")
    print("stretches with no model call in flight, longest first:")
    for begin, finish in sorted(idle_stretches(calls, start, end), key=lambda s: s[0] - s[1]):
        print(f"  {(finish - begin) * 1000:7.1f} ms  from {begin * 1000:7.1f} to {finish * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timeline", description=__doc__.split("\n")[0])
    parser.add_argument("--warm", type=int, default=3, help="warm runs before the one traced (default 3)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds every model answer takes (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-timeline-") as folder:
        asyncio.run(trace(args.warm, args.latency, Path(folder)))
    os._exit(0)  # temporalio/sdk-python#300: no client teardown at interpreter exit


if __name__ == "__main__":
    main()
