"""The timeline benchmark's attribution: the stretches with no model call in flight are the run's overhead."""

from __future__ import annotations

import pytest

from benchmarks.common import MachineTime, busy_seconds, spent_between
from benchmarks.timeline import idle_stretches
from deploy.scripted_model import Request


def flat(stretches: list[tuple[float, float]]) -> list[float]:
    return [edge for stretch in stretches for edge in stretch]


def call(received: float, answered: float) -> Request:
    return Request(run="r", step="s", agent="a", attempt=1, body={}, received=received, answered=answered)


def test_overlapping_calls_leave_only_the_gaps_between_them() -> None:
    calls = [call(10.2, 11.2), call(10.3, 11.0), call(11.3, 12.3)]  # the second inside the first
    assert flat(idle_stretches(calls, 10.0, 12.5)) == pytest.approx([0.0, 0.2, 1.2, 1.3, 2.3, 2.5])


def test_calls_that_touch_leave_no_gap_and_an_unanswered_call_runs_to_the_end() -> None:
    assert idle_stretches([call(10.0, 11.0), call(11.0, 12.0)], 10.0, 12.0) == []
    assert flat(idle_stretches([call(10.5, 0.0)], 10.0, 12.0)) == pytest.approx([0.0, 0.5])


@pytest.mark.parametrize("calls", [
    [call(10.2, 11.2), call(10.3, 11.0), call(11.3, 12.3)],
    [call(9.5, 10.4), call(12.0, 13.0)],  # calls reaching outside the run are clipped to it
    [],
])
def test_the_stretches_and_the_llm_time_add_up_to_the_run(calls: list[Request]) -> None:
    start, end = 10.0, 12.5
    idle = sum(finish - begin for begin, finish in idle_stretches(calls, start, end))
    assert idle + busy_seconds(calls, start, end) == pytest.approx(end - start)


def test_cpu_by_phase_takes_the_samples_nearest_to_its_ends() -> None:
    """A phase's CPU is the difference between the samples nearest its start and its end, process by process (a
    process missing from one sample is left out)."""
    samples = [(10.00, {"a": 1.0, "b": 5.0}), (10.02, {"a": 1.01, "b": 5.0}), (10.04, {"a": 1.03, "b": 5.02}),
               (10.06, {"a": 1.05, "b": 5.03, "c": 0.5})]
    assert spent_between(samples, 10.011, 10.049) == pytest.approx({"a": 0.02, "b": 0.02})
    assert spent_between(samples, 10.019, 10.061) == pytest.approx({"a": 0.04, "b": 0.03})
    assert spent_between([], 10.0, 11.0) == {}


def test_the_share_of_the_machine_the_hypervisor_took_is_read_from_proc_stat() -> None:
    before = MachineTime.parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n")
    after = MachineTime.parse("cpu  160 0 70 900 10 0 0 100 30 0\ncpu0 80 0 35 450 5 0 0 50 15 0\n")
    assert (before.total, before.steal) == (1000, 40)
    # 240 ticks went by, 60 of them taken; guest time (30) is counted within user time already
    assert after.stolen_since(before) == pytest.approx(60 / 240)
    assert after.stolen_since(after) == 0.0  # no time went by: nothing taken, no division by zero
    now = MachineTime.now()
    assert now.total > 0 and 0.0 <= now.stolen_since(MachineTime(0, 0)) <= 1.0
