"""How a worker process runs once started: its garbage collector settled before it serves, its heartbeats held to
what the server needs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from temporalio.testing import ActivityEnvironment

from shared.temporal import heartbeat_every
from tests.harness import ROOT


def test_a_worker_freezes_its_start_up_heap_and_collects_the_young_generation_less_often() -> None:
    # in a process of its own: the collector's settings are the process's, and this one runs the other tests
    probe = ("import gc, json; from shared.temporal import GC_YOUNG_THRESHOLD, settle_heap;"
             " before = gc.get_threshold(); settle_heap();"
             " print(json.dumps({'before': before, 'after': gc.get_threshold(),"
             " 'frozen': gc.get_freeze_count(), 'young': GC_YOUNG_THRESHOLD}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    seen = json.loads(done.stdout)
    assert seen["before"][0] == 700  # Python's default, which the workers do not keep
    assert seen["after"] == [seen["young"], *seen["before"][1:]]
    assert seen["frozen"] > 10_000  # the SDKs' and our modules' objects, no longer walked by every collection


def test_ingest_heartbeats_at_most_once_a_second_however_often_it_reports() -> None:
    """Ingest reports progress once a chunk, from a thread; each heartbeat wakes the worker's loop, so at most one
    an interval goes on, the first an interval after the start (as the model calls' heartbeats)."""
    sent: list[tuple[object, ...]] = []
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: sent.append(details)

    def reporting() -> None:
        beat = heartbeat_every(0.2)
        for rows in range(100):  # a burst, well within the interval: nothing goes on
            beat(rows)
        assert sent == []
        time.sleep(0.25)
        beat(100)
        beat(101)  # at once after: held back
        assert sent == [(100,)]

    environment.run(reporting)
