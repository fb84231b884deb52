"""Consume Tollgate's progress events from another service, with a Redis consumer group.

Every run's events also go to the stream ``tollgate:runs``. A consumer group shares that stream among the
replicas of a service: each event is delivered to one of them, and acknowledged when its handler returns.
Events carry a deterministic ``event_id``; the publisher already drops repeats, and a consumer that must be exact
can keep the ids it has handled.

    uv run faststream run examples.progress_consumer:app     # against TOLLGATE_REDIS_URL
    uv run faststream docs gen examples.progress_consumer:app  # the AsyncAPI document (docs/asyncapi.json)
"""

from __future__ import annotations

import logging

from faststream import AsyncAPI, FastStream
from faststream.redis import RedisBroker, StreamSub

from shared.events import ALL_RUNS_STREAM, FINAL_KINDS, ProgressEvent
from shared.settings import get_settings

log = logging.getLogger("progress-consumer")

broker = RedisBroker(get_settings().redis_url)
app = FastStream(broker, specification=AsyncAPI(
    broker, title="Tollgate progress events", version="1.0",
    description="Every step transition of every Tollgate run, in order, on Redis Streams.",
))

runs = StreamSub(ALL_RUNS_STREAM, group="progress-consumer", consumer="consumer-1")

# What Tollgate's orchestrator publishes, declared here so the AsyncAPI document describes both sides. It also
# writes each run's events to its own stream, tollgate:run:<run_id>, which `tollgate watch` replays.
published = broker.publisher(
    stream=ALL_RUNS_STREAM, schema=ProgressEvent, title="tollgate:runs (published)",
    description="Published by the orchestrator for every transition of every run; per-run copies go to "
    "tollgate:run:<run_id>. Bounded length, 7 days' retention.",
)


@broker.subscriber(stream=runs, title="tollgate:runs", description="Progress events of all runs.")
async def on_progress(event: ProgressEvent) -> None:
    """One transition of one run: here it is logged; a dashboard or a Slack bot would act on it."""
    if event.kind == "gate_verdict" and not event.body.passed:
        log.info("run %s: %s attempt %d rejected by the %s layer: %s", event.run_id, event.step, event.attempt,
                 event.body.layer, "; ".join(event.body.reasons[:3]))
    elif event.kind in FINAL_KINDS:
        log.info("run %s %s: %s", event.run_id, event.kind.removeprefix("run_"), event.body.summary)
    received.append(event)


# What the handler has seen in this process (the test reads it; a real consumer would not keep this).
received: list[ProgressEvent] = []
