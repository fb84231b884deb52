"""``tollgate watch``: replay a run's progress events from the start, then follow them live until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache

from faststream.redis.parser import BinaryMessageFormatV1
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from shared.codec import Keyring, KeyringError, keyring_from
from shared.events import FINAL_KINDS, ProgressEvent, open_event, run_stream
from shared.figures import counted
from shared.settings import get_settings

DATA_KEY = b"__data__"


@lru_cache(maxsize=1)
def _keyring() -> Keyring | None:
    """This reader's keyring, to open sealed event text; None when encryption is off or no key is here."""
    try:
        return keyring_from(get_settings())
    except (KeyringError, ValueError):
        return None


def decode(fields: dict[bytes, bytes]) -> ProgressEvent:
    """A stream entry as FastStream wrote it (its binary envelope around our JSON), its sealed text opened."""
    data = fields[DATA_KEY]
    body = BinaryMessageFormatV1.parse(data)[0] if data.startswith(BinaryMessageFormatV1.IDENTITY_HEADER) else data
    return open_event(_keyring(), ProgressEvent.model_validate_json(body))


RunStatus = Callable[[], Awaitable[str]]
# A run that Temporal reports ended is given this long for its last event to arrive (the orchestrator publishes
# after the workflow's own step); a terminated or timed-out run has no last event to wait for.
LAST_EVENT_GRACE = 10.0
SILENT_ENDS = ("terminated", "timed_out")


async def follow(redis: Redis, run_id: str, *, block_ms: int = 1000,
                 run_status: RunStatus | None = None) -> AsyncIterator[ProgressEvent]:
    """Every event of the run once, in sequence order, from the first; ends after its final event
    (completed, failed, cancelled), or, given ``run_status``, once Temporal says the run ended without one.

    Survives Redis going away: it waits and resumes after the last entry it saw."""
    last = "0"
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    ended_at: float | None = None
    while True:
        try:
            answer: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = await redis.xread(
                {run_stream(run_id): last}, block=block_ms, count=500
            )  # type: ignore[assignment]
        except (RedisError, OSError):
            answer = []
            await asyncio.sleep(0.5)
        if not answer and run_status is not None:
            if ended_at is None:
                status = await run_status()
                if status != "running":
                    ended_at = loop.time() - (LAST_EVENT_GRACE if status in SILENT_ENDS else 0)
            if ended_at is not None and loop.time() - ended_at >= LAST_EVENT_GRACE:
                return
        for _stream, entries in answer:
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                event = decode(fields)
                if event.event_id in seen:  # a duplicate publish; the publisher drops them, this is belt and braces
                    continue
                seen.add(event.event_id)
                yield event
                if event.kind in FINAL_KINDS:
                    return


@dataclass
class BranchTally:
    chunks: int = 0
    done: int = 0
    rejections: int = 0
    retries: int = 0
    failed_attempts: int = 0  # activity attempts that failed or timed out (Temporal retried them)
    waiting: int = 0  # steps waiting for a reviewer
    quarantined: int = 0
    task: TaskID | None = None


@dataclass
class Watcher:
    """Turns events into progress bars per branch and one line per gate verdict."""

    console: Console
    jaeger_url: str | None = None  # a trace link only where one is configured
    branches: dict[str, BranchTally] = field(default_factory=dict)
    progress: Progress | None = None

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, soft_wrap=True)
        else:
            self.console.print(text, highlight=False, soft_wrap=True)

    def _tally(self, branch: str) -> BranchTally:
        return self.branches.setdefault(branch, BranchTally())

    def _refresh(self, branch: str) -> None:
        tally = self._tally(branch)
        if self.progress is None:
            return
        label = f"{branch:<13} {tally.rejections} rejected, {tally.retries} retried" + _extras(tally)
        if tally.task is None:
            tally.task = self.progress.add_task(label, total=tally.chunks or None)
        self.progress.update(tally.task, completed=tally.done, total=tally.chunks or None, description=label)

    def handle(self, event: ProgressEvent) -> None:
        branch = event.branch or "insights"
        step = f"{event.step} attempt {event.attempt}" if event.step else ""
        if event.kind == "run_started":
            self.line(f"#{event.seq} run {event.run_id} started")
            if event.trace_id:
                link = f": {self.jaeger_url}/trace/{event.trace_id}" if self.jaeger_url else ""
                self.line(f"trace {event.trace_id}{link}")
        elif event.kind == "ingest_done":
            for plan in event.body.plans:
                self._tally(plan.branch).chunks = plan.chunks
                self._refresh(plan.branch)
            self._tally("insights").chunks = 1
            self._refresh("insights")
            plans = ", ".join(f"{p.branch} {counted(p.rows, 'row')} in {counted(p.chunks, 'chunk')}"
                              for p in event.body.plans)
            self.line(f"#{event.seq} ingested: {plans}")
        elif event.kind == "gate_verdict":
            outcome = "passed" if event.body.passed else "rejected"
            reasons = "" if event.body.passed else ": " + "; ".join(event.body.reasons[:3])
            self.line(f"#{event.seq} gate {step} {outcome} by the {event.body.layer} layer{reasons}")
            if not event.body.passed:
                self._tally(branch).rejections += 1
                self._refresh(branch)
        elif event.kind == "retry_with_feedback":
            self._tally(branch).retries += 1
            self._refresh(branch)
        elif event.kind == "step_succeeded":
            self._tally(branch).done += 1
            self._refresh(branch)
        elif event.kind == "step_failed":
            self.line(f"#{event.seq} step {step} failed: its gate budget is spent")
        elif event.kind == "run_completed":
            self.line(f"#{event.seq} run completed: {event.body.summary}; report {event.body.report}"
                      + (f"; {event.body.events_lost} progress events lost" if event.body.events_lost else ""))
        elif event.kind == "run_failed":
            self.line(f"#{event.seq} run failed at {event.step or 'start'}: {event.body.summary}")
        elif event.kind == "run_cancelled":
            self.line(f"#{event.seq} run cancelled at {event.step or 'start'}")
        elif event.kind == "activity_failed":
            self.line(f"#{event.seq} {event.step}: {event.body.summary}")
            if event.branch or event.step == "insights":
                self._tally(branch).failed_attempts += 1
                self._refresh(branch)
        elif event.kind == "activity_retry":
            self.line(f"#{event.seq} {event.step}: {event.body.summary}")
        elif event.kind == "review_requested":
            self.line(f"#{event.seq} {event.step} waits for a reviewer after {event.attempt} rejected attempts: "
                      f"tollgate review {event.run_id} {event.step}")
            self._tally(branch).waiting += 1
            self._refresh(branch)
        elif event.kind == "review_resolved":
            self.line(f"#{event.seq} {event.step}: {event.body.summary}")
            self._tally(branch).waiting -= 1
            self._refresh(branch)
        elif event.kind == "step_quarantined":
            self.line(f"#{event.seq} {event.step} quarantined: {event.body.summary}")
            self._tally(branch).quarantined += 1
            self._refresh(branch)

    def totals(self) -> list[str]:
        """A line a branch: ``contacts: 3/4 chunks done, 1 rejection, 0 retries`` (the insights step is one step, not
        a chunk: ``insights: 1/1 steps done``)."""
        return [f"{name}: {t.done}/{t.chunks} {'steps' if name == 'insights' else 'chunks'} done, "
                f"{counted(t.rejections, 'rejection')}, {counted(t.retries, 'retry', 'retries')}" + _extras(t)
                for name, t in self.branches.items()]


def _extras(t: BranchTally) -> str:
    return "".join(f", {what}" for n, what in ((t.failed_attempts, counted(t.failed_attempts, "failed attempt")),
                                                (t.waiting, f"{t.waiting} waiting for review"),
                                                (t.quarantined, f"{t.quarantined} quarantined")) if n)


async def tally(redis_url: str, run_id: str) -> list[str]:
    """Per-branch totals from the events published so far (chunk level, unlike the workflow's batch-level
    query); empty when Redis cannot be read."""
    redis: Redis = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    watcher = Watcher(Console(quiet=True))
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(
            run_stream(run_id)
        )  # type: ignore[assignment]
    except (RedisError, OSError):
        return []
    finally:
        await redis.aclose()
    for _entry_id, fields in entries:
        watcher.handle(decode(fields))
    return watcher.totals()


async def watch(redis_url: str, run_id: str, console: Console | None = None,
                jaeger_url: str | None = None, run_status: RunStatus | None = None) -> int:
    """Print the run's progress until it ends, however it ends; 0 when it completed, 1 otherwise."""
    console = console or Console()
    redis: Redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    watcher = Watcher(console, jaeger_url=jaeger_url)
    status = 1
    final = False
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=False, disable=not console.is_terminal) as progress:
            watcher.progress = progress
            async for event in follow(redis, run_id, run_status=run_status):
                watcher.handle(event)
                final = final or event.kind in FINAL_KINDS
                if event.kind == "run_completed":
                    status = 0
        watcher.progress = None
        if not final and run_status is not None:
            ended = await run_status()
            watcher.line(f"run {run_id} ended: {ended.replace('_', ' ')}" + (
                " (by Temporal: no workflow code ran to announce it)" if ended in SILENT_ENDS else ""))
            status = 0 if ended == "completed" else 1
        for line in watcher.totals():
            watcher.line(line)
    finally:
        await redis.aclose()
    return status
