"""The orchestrator's progress activity: hands events to the publisher without waiting for Redis."""

from __future__ import annotations

from temporalio import activity

from shared import steps
from shared.events import ProgressBatch, ProgressEvent
from shared.progress import ProgressPublisher
from shared.telemetry import current_trace_id


class ProgressActivities:
    def __init__(self, publisher: ProgressPublisher) -> None:
        self.publisher = publisher

    @activity.defn(name=steps.PUBLISH_PROGRESS)
    async def publish_progress(self, event: ProgressEvent) -> int:
        """Queue the event for Redis and return at once; the result is how many of the run's events were lost."""
        if event.trace_id is None:
            # the interceptor made this activity's span a child of the run's trace: that is the run's trace id
            event = event.model_copy(update={"trace_id": current_trace_id()})
        return self.publisher.submit(event)

    @activity.defn(name=steps.PUBLISH_PROGRESS_MANY)
    async def publish_progress_many(self, batch: ProgressBatch) -> int:
        """Queue several events in order; one local activity, so one marker in the history instead of several."""
        lost = 0
        for event in batch.events:
            lost = await self.publish_progress(event)
        return lost
