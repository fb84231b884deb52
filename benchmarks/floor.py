"""The dev server's own floor for the throughput benchmark: a workflow of bare activities (its own module: the
workflow sandbox imports it afresh, so it imports nothing else)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(index: int) -> int:
    return index


@workflow.defn(name="BenchFloor")
class Floor:
    @workflow.run
    async def run(self, count: int) -> int:
        done = 0
        for start in range(0, count, 16):
            done += sum(await asyncio.gather(*(workflow.execute_activity(
                "bench_noop", i, start_to_close_timeout=timedelta(seconds=30), result_type=int)
                for i in range(start, min(count, start + 16)))))
        return done


@workflow.defn(name="BenchSequentialFloor")
class SequentialFloor:
    """Bare activities one after another, on another task queue than the workflow's (as every step's activity is):
    what one hand-off (a workflow task, then an activity task) costs."""

    @workflow.run
    async def run(self, count: int, activity_queue: str) -> int:
        for i in range(count):
            await workflow.execute_activity("bench_noop", i, task_queue=activity_queue,
                                            start_to_close_timeout=timedelta(seconds=30), result_type=int)
        return count
