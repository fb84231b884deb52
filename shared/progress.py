"""Progress events onto Redis Streams with FastStream's Redis broker: one stream per run, one for all runs.

Publishing never fails or stalls a run: events wait in a bounded in-process buffer while Redis is away and are
delivered, in order, when it returns; what overflows the buffer is counted per run and reported on the run.
Each event id is published once: a small Lua script gives the id its per-run sequence number the first time it
is seen, and a transaction writes the two stream entries and marks the id done together, so a step that
announces itself again after a crash or a retry is dropped at the source. The events waiting in the buffer go
together, up to ``BATCH`` of them in two round trips (the claims, then one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice

from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.codec import Keyring
from shared.events import ALL_RUNS_STREAM, FINAL_KINDS, ProgressEvent, run_stream, seal_event

log = logging.getLogger("tollgate.progress")

# KEYS: a dedupe key and its run's sequence key, for each event in turn. Returns [seq, state] for each: state is
# "new", "claimed" (seq given by an earlier attempt that never finished publishing: publish it now) or "done"
# (already published: drop it).
_CLAIM = """
local claimed = {}
for i = 1, #KEYS, 2 do
  local held = redis.call('GET', KEYS[i])
  if held then
    local seq, state = string.match(held, '^(%d+):(%a+)$')
    claimed[#claimed + 1] = {tonumber(seq), state}
  else
    local seq = redis.call('INCR', KEYS[i + 1])
    redis.call('SET', KEYS[i], seq .. ':claimed', 'EX', ARGV[1])
    claimed[#claimed + 1] = {seq, 'new'}
  end
end
return claimed
"""


POISON_AFTER = 5  # an event that fails this often for a reason other than Redis is dropped and counted lost
BATCH = 64  # events delivered in one claim and one transaction


class ProgressPublisher:
    """Buffers events and delivers them to Redis in order, retrying while Redis is unreachable."""

    def __init__(self, redis_url: str, *, buffer_size: int = 10_000, run_maxlen: int = 10_000,
                 all_maxlen: int = 100_000, retention: timedelta = timedelta(days=7),
                 keyring: Keyring | None = None) -> None:
        self.redis_url = redis_url
        self.keyring = keyring  # seals the text that can quote CRM fields (reasons, summaries)
        self.buffer_size = buffer_size
        self.run_maxlen = run_maxlen
        self.all_maxlen = all_maxlen
        self.retention = retention
        self.broker = RedisBroker(redis_url)
        self.redis: Redis = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._pending: deque[ProgressEvent] = deque()
        self._lost: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self.published = 0
        self.duplicates = 0

    def submit(self, event: ProgressEvent) -> int:
        """Queue one event without waiting; returns how many of its run's events the buffer has had to drop."""
        if self.keyring is not None:
            event = seal_event(self.keyring, event)
        if len(self._pending) >= self.buffer_size:
            self._lost[event.run_id] = self._lost.get(event.run_id, 0) + 1
            log.warning("progress buffer full: dropped %s (%d lost for run %s)", event.event_id,
                        self._lost[event.run_id], event.run_id)
        else:
            self._pending.append(event)
            self._wake.set()
        if self._task is None or self._task.done():  # started once, and again should anything have ended it
            self._task = asyncio.get_running_loop().create_task(self._deliver())
        return self._lost.get(event.run_id, 0)

    def lost(self, run_id: str) -> int:
        return self._lost.get(run_id, 0)

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def drain(self, seconds: float = 10.0) -> bool:
        """Wait until the buffer is empty (for shutdown and tests); False if it did not empty in time."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self._pending and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(0.01)
        return not self._pending

    async def close(self, drain_seconds: float = 5.0) -> None:
        await self.drain(drain_seconds)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connected:
            await self.broker.stop()
        await self.redis.aclose()

    async def _deliver(self) -> None:
        delay = 0.05
        failures = 0
        alone = 0  # events still to deliver one at a time: a batch failed for a reason that is not Redis
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._pending[0]] if alone else list(islice(self._pending, BATCH))
            try:
                await self.publish_many(batch)
            except (RedisError, OSError) as error:
                log.warning("Redis unreachable (%s); %d progress events wait, retrying in %.1fs", error,
                            len(self._pending), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as error:  # not Redis: a bug or a bad event; it must not stop the events behind it
                if len(batch) > 1:  # find which: these go one at a time
                    alone = len(batch)
                    continue
                failures += 1
                if failures < POISON_AFTER:
                    log.warning("publishing %s failed (%s: %s); retrying", batch[0].event_id,
                                type(error).__name__, str(error)[:200])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                event = self._pending.popleft()
                alone = max(0, alone - 1)
                self._lost[event.run_id] = self._lost.get(event.run_id, 0) + 1
                log.error("dropped progress event %s after %d failures (%s: %s); the run counts it lost",
                          event.event_id, failures, type(error).__name__, str(error)[:200])
                failures, delay = 0, 0.05
                continue
            for _ in batch:
                self._pending.popleft()
            alone = max(0, alone - len(batch))
            failures, delay = 0, 0.05

    async def publish(self, event: ProgressEvent) -> bool:
        """Publish one event now, unless its id was published before; True if it was written."""
        return await self.publish_many([event]) == 1

    async def publish_many(self, events: Sequence[ProgressEvent]) -> int:
        """Publish events now, in order, each unless its id was published before; returns how many were written."""
        if not self._connected:
            await self.broker.connect()
            self._connected = True
        ttl = int(self.retention.total_seconds())
        keys = [key for event in events for key in (f"tollgate:event:{event.event_id}", f"tollgate:seq:{event.run_id}")]
        claims = await self.redis.eval(_CLAIM, len(keys), *keys, ttl)
        written = 0
        seen: set[str] = set()  # an id twice in one batch: the second is a duplicate like any other
        streams: set[str] = set()  # each run's stream written to, its expiry renewed once a batch
        async with self.redis.pipeline(transaction=True) as pipe:
            for event, (seq, state) in zip(events, claims, strict=True):
                state = state.decode() if isinstance(state, bytes) else str(state)
                if state == "done" or event.event_id in seen:
                    self.duplicates += 1
                    pipe.incr(f"tollgate:duplicates:{event.run_id}")
                    continue
                update: dict[str, object] = {"seq": int(seq), "published_at": datetime.now(UTC)}
                if event.kind in FINAL_KINDS:
                    update["body"] = event.body.model_copy(update={"events_lost": self.lost(event.run_id)})
                body = event.model_copy(update=update).model_dump_json().encode()
                stream = run_stream(event.run_id)
                await self.broker.publish(body, stream=stream, maxlen=self.run_maxlen, pipeline=pipe)
                await self.broker.publish(body, stream=ALL_RUNS_STREAM, maxlen=self.all_maxlen, pipeline=pipe)
                pipe.set(f"tollgate:event:{event.event_id}", f"{int(seq)}:done", ex=ttl)
                streams.add(stream)
                seen.add(event.event_id)
                written += 1
            for stream in sorted(streams):
                pipe.expire(stream, ttl)
            await pipe.execute()
        self.published += written
        return written
