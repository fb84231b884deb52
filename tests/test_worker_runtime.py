"""How a worker process runs once started: its garbage collector settled before it serves."""

from __future__ import annotations

import json
import subprocess
import sys

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
