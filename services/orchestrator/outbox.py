"""Progress events from workflow code to the orchestrator's publisher, without a local activity per announcement.

Progress is a side channel, like the SDK's workflow logger: nothing a workflow decides depends on it, so it needs no
command and no history event. Workflow code calls ``emit``; while the workflow replays its history ``emit`` does
nothing (those events were handed over when that part of the run first ran), otherwise it hands the events, in
order, to the process's ``ProgressPublisher``, which delivers them to Redis in the background, at most once per
event id. This is what the local activity that announced before it did (it queued the event and returned), minus
a round trip between the workflow and its worker and a marker in the history for every announcement
(docs/benchmarks.md).

What is delivered is what it was with the local activity:
- an activation whose commands the server accepted handed its events over before it finished; a worker that dies
  after that and before Redis has them loses them, as before (the publisher is in the same process);
- an activation that does not complete (a worker killed mid-task, a task the server turns away) runs again from
  the history, and does not count as replaying where it goes beyond it: its events are handed over again with the
  same ids, and Redis keeps one of each.

It is the one call workflow modules may make that is not Temporal's or pure (tests/test_determinism.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio import workflow

from shared.events import ProgressEvent
from shared.progress import ProgressPublisher
from shared.telemetry import current_trace_id


@dataclass
class _Outbox:
    publisher: ProgressPublisher | None = None
    loop: asyncio.AbstractEventLoop | None = None


_OUTBOX = _Outbox()


def install(publisher: ProgressPublisher, loop: asyncio.AbstractEventLoop) -> None:
    """The orchestrator worker's publisher, and the event loop it runs on (workflow activations run in threads)."""
    _OUTBOX.publisher, _OUTBOX.loop = publisher, loop


def uninstall() -> None:
    _OUTBOX.publisher, _OUTBOX.loop = None, None


class OutboxMissing(RuntimeError):
    """Workflow code announced progress in a process whose worker installed no publisher."""


def emit(events: Sequence[ProgressEvent]) -> None:
    """Hand ``events`` to the publisher, in order, unless the workflow is replaying. Called from workflow code."""
    if workflow.unsafe.is_replaying():
        return
    publisher, loop = _OUTBOX.publisher, _OUTBOX.loop
    if publisher is None or loop is None:
        raise OutboxMissing("no progress publisher is installed in this worker (services/orchestrator/outbox.install)")
    # the workflow runs in its run's trace (the tracing interceptor attaches the starter's context): its events say so
    trace_id = current_trace_id()
    stamped = [e if e.trace_id is not None or trace_id is None else e.model_copy(update={"trace_id": trace_id})
               for e in events]
    loop.call_soon_threadsafe(_submit, publisher, stamped)


def _submit(publisher: ProgressPublisher, events: list[ProgressEvent]) -> None:
    for event in events:
        publisher.submit(event)
