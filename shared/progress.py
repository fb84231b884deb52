"""Progress events onto Redis Streams in FastStream's message format: one stream per run, one for all runs.

Publishing never fails or stalls a run: events wait in a bounded in-process buffer while Redis is away and are
delivered, in order, when it returns; what overflows the buffer is counted per run and reported on the run.
Each event id is published once: one Lua script gives a new id its run's next sequence number, writes the two
stream entries and marks the id done, atomically, so a step that announces itself again after a crash or a retry
is dropped at the source, and the publishers of every service writing to one run (the orchestrator, the analyzer
and validator workers) write its numbers in order, with no gap, whichever of them dies when. The events waiting
in the buffer go together, up to ``BATCH`` of them in one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice

from faststream.redis.parser import BinaryMessageFormatV1
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.codec import Keyring
from shared.events import ALL_RUNS_STREAM, FINAL_KINDS, ProgressEvent, run_stream, seal_event

log = logging.getLogger("tollgate.progress")

# One call publishes a batch. KEYS[1] is the stream of all runs, then four keys for each event in turn: its dedupe
# mark, its run's sequence counter, its run's stream and its run's duplicate counter. ARGV: the retention in
# seconds, the two streams' lengths, then for each event the stream entry before its sequence number and after it.
# An id seen before is dropped and counted; a new id gets the next number of its run, is written to both streams
# and is marked done, in the one atomic step: no other publisher can take a later number and write before it (a
# number written out of order), and a publisher that dies cannot leave a number taken and never written (a gap).
# A mark "N:claimed" was left by a publisher of an earlier release that claimed N and may never have written it:
# the event goes out under N. Returns 1 for each event written, 0 for each dropped.
_PUBLISH = """
local ttl, run_maxlen, all_maxlen = ARGV[1], ARGV[2], ARGV[3]
local written, renew = {}, {}
for i = 0, (#KEYS - 1) / 4 - 1 do
  local mark, counter, stream, dups = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local held, seq = redis.call('GET', mark), nil
  if held then
    local number, state = string.match(held, '^(%d+):(%a+)$')
    if state == 'claimed' then seq = number end
  else
    seq = redis.call('INCR', counter)
  end
  if seq then
    local entry = ARGV[4 + 2 * i] .. seq .. ARGV[5 + 2 * i]
    redis.call('XADD', stream, 'MAXLEN', '~', run_maxlen, '*', '__data__', entry)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', all_maxlen, '*', '__data__', entry)
    redis.call('SET', mark, seq .. ':done', 'EX', ttl)
    renew[stream], renew[counter] = true, true
    written[#written + 1] = 1
  else
    redis.call('INCR', dups)
    renew[dups] = true
    written[#written + 1] = 0
  end
end
for key in pairs(renew) do redis.call('EXPIRE', key, ttl) end
return written
"""
_SEQ = b'"seq":'
_UNSET = -1  # the number an entry is encoded with, cut out and given by the script


POISON_AFTER = 5  # an event that fails this often for a reason other than Redis is dropped and counted lost
BATCH = 64  # events delivered in one call of the script


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
        self.redis: Redis = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._pending: deque[ProgressEvent] = deque()
        self._lost: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
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
        keys = [ALL_RUNS_STREAM]
        args: list[bytes | int] = [int(self.retention.total_seconds()), self.run_maxlen, self.all_maxlen]
        now = datetime.now(UTC)
        for event in events:
            keys += [f"tollgate:event:{event.event_id}", f"tollgate:seq:{event.run_id}", run_stream(event.run_id),
                     f"tollgate:duplicates:{event.run_id}"]
            args += await self._entry(event, now)
        written: list[int] = await self.redis.eval(_PUBLISH, len(keys), *keys, *args)
        count = sum(written)
        self.published += count
        self.duplicates += len(written) - count
        return count

    async def _entry(self, event: ProgressEvent, now: datetime) -> tuple[bytes, bytes]:
        """The event's stream entry in FastStream's format, cut where the script writes its sequence number."""
        update: dict[str, object] = {"seq": _UNSET, "published_at": now}
        if event.kind in FINAL_KINDS:
            update["body"] = event.body.model_copy(update={"events_lost": self.lost(event.run_id)})
        body = event.model_copy(update=update).model_dump_json().encode()
        entry = await BinaryMessageFormatV1.encode(message=body, reply_to=None, headers=None,
                                                   correlation_id=event.event_id)
        # the first match is the event's own key: in a JSON text a quote is escaped, and seq comes before the body
        head, found, tail = body.partition(_SEQ + str(_UNSET).encode())
        if not found:
            raise ValueError(f"event {event.event_id}: no sequence number to fill in its JSON")
        return entry[: len(entry) - len(body)] + head + _SEQ, tail
