"""Activity attempts as progress events: a step whose model call times out or fails again and again is not silent.

Temporal retries an activity without the workflow seeing it, so the workflow cannot announce it. Each worker
does: an inbound interceptor publishes ``activity_failed`` when an attempt raises (with the error, bounded) and
``activity_retry`` when an attempt after the first starts (an attempt that timed out raised nothing in any
worker: the next one starting is how it shows). Event ids are made of run, step, gate attempt, activity and
activity attempt, so a redelivered task is announced once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import is_cancelled_exception
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from shared.contracts import Branch
from shared.events import EventBody, EventKind, ProgressEvent
from shared.progress import ProgressPublisher
from shared.telemetry import current_trace_id
from shared.temporal import current_step


def _branch(step: str) -> Branch | None:
    head = step.split("/", 1)[0]
    return head if head in ("contacts", "opportunities") else None  # type: ignore[return-value]


class ActivityEvents(Interceptor):
    """Install on a worker: every attempt of its activities that fails or retries becomes a progress event."""

    def __init__(self, publisher: ProgressPublisher) -> None:
        self.publisher = publisher
        self.loop = asyncio.get_running_loop()  # sync activities run in threads: events are handed to this loop

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: ActivityEvents) -> None:
        super().__init__(next)
        self.owner = owner

    def _announce(self, task: Any, kind: EventKind, summary: str) -> None:
        info = activity.info()
        step = str(getattr(task, "step", "") or info.activity_type)
        run_id = str(getattr(task, "run_id", "") or "")
        if not run_id:
            return
        gate_attempt = int(getattr(task, "attempt", 0) or 0)
        event = ProgressEvent(
            event_id=f"{run_id}:{kind}:{step}:{gate_attempt}:{info.activity_type}:{info.attempt}",
            run_id=run_id, kind=kind, step=step, attempt=gate_attempt, branch=_branch(step),
            at=datetime.now(UTC), trace_id=current_trace_id(),
            body=EventBody(summary=summary[:500], activity=info.activity_type, activity_attempt=info.attempt),
        )
        self.owner.loop.call_soon_threadsafe(self.owner.publisher.submit, event)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        task = input.args[0] if input.args else None
        info = activity.info()
        current_step.set(" ".join(str(x) for x in (getattr(task, "run_id", ""), getattr(task, "step", "")) if x))
        if info.attempt > 1:
            self._announce(task, "activity_retry", f"{info.activity_type} attempt {info.attempt} started")
        try:
            return await self.next.execute_activity(input)
        except BaseException as error:
            if not is_cancelled_exception(error):
                message = getattr(error, "message", None) or str(error) or type(error).__name__
                self._announce(task, "activity_failed", f"{info.activity_type} attempt {info.attempt} failed: "
                               f"{message}")
            elif (details := activity.cancellation_details()) is not None and (details.timed_out or details.not_found):
                # the server gave up on this attempt (its timeout passed; a heartbeat told the worker): a failure
                self._announce(task, "activity_failed", f"{info.activity_type} attempt {info.attempt} timed out")
            raise
