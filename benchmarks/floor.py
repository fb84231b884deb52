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


@workflow.defn(name="BenchShapeFloor")
class ShapeFloor:
    """Bare steps of a gated step's shape: an activity on one task queue, then one on another (the analyzer's and
    the validator's), each scheduled by the workflow when the one before it completes, ``in_flight`` steps at a
    time. What the dev server and the SDK cost for the pipeline's shape, with no work in the activities."""

    @workflow.run
    async def run(self, count: int, first_queue: str, second_queue: str, in_flight: int) -> int:
        slots = asyncio.Semaphore(in_flight)

        async def step(index: int) -> int:
            async with slots:
                for queue in (first_queue, second_queue):
                    index = await workflow.execute_activity(
                        "bench_noop", index, task_queue=queue, start_to_close_timeout=timedelta(seconds=30),
                        result_type=int)
                return index

        return sum(await asyncio.gather(*(step(i) for i in range(count))))
