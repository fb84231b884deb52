"""The validation gate, as workflow code: analyze, validate, and on rejection re-run that step alone.

Each call is a Temporal activity, so every attempt and every verdict is checkpointed in the workflow history:
a crash between the analysis and its verdict resumes at the verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from shared.contracts import FailedCheck, GateRecord, GateVerdict, StepOutput, StepPolicy, TokenUsage

R = TypeVar("R", bound=BaseModel)


class GateEvents(Protocol):
    """Where a gate announces its transitions (progress events); every method is awaited in workflow code."""

    async def started(self, attempt: int) -> None: ...
    async def verdict(self, verdict: GateVerdict) -> None: ...
    async def retrying(self, attempt: int, feedback: list[FailedCheck]) -> None: ...
    async def succeeded(self, attempt: int) -> None: ...
    async def failed(self, attempt: int, verdict: GateVerdict) -> None: ...

# Failures that no retry of the same activity can fix: Temporal gives up on them at once.
NON_RETRYABLE = ["BadInput", "LlmRequestRejected", "GateBudgetSpent"]
FEEDBACK_ITEMS = 12  # reasons handed to the retried step; more only dilutes a small model's attention
KEPT_REASONS = 5  # reasons per rejection kept in the run's history and report


async def run_step(activity: str, argument: BaseModel, result_type: type[R], policy: StepPolicy,
                   task_queue: str) -> R:
    """Run one activity under its step class's timeouts and retry policy; its result is checkpointed."""
    result = await workflow.execute_activity(
        activity,
        argument,
        result_type=result_type,
        task_queue=task_queue,
        start_to_close_timeout=policy.start_to_close,
        schedule_to_close_timeout=policy.schedule_to_close,
        heartbeat_timeout=policy.heartbeat,
        retry_policy=RetryPolicy(
            initial_interval=policy.initial_retry,
            backoff_coefficient=2.0,
            maximum_interval=max(policy.max_retry_interval, policy.initial_retry),
            maximum_attempts=policy.max_attempts,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    )
    return cast(R, result)


def _trimmed(verdict: GateVerdict) -> GateVerdict:
    return verdict.model_copy(update={"failed_checks": verdict.failed_checks[:KEPT_REASONS]})


def budget_spent_message(step: str, attempts: int, last: GateVerdict) -> str:
    reasons = "; ".join(check.reason for check in last.failed_checks[:KEPT_REASONS])
    more = last.failed_total - min(last.failed_total, KEPT_REASONS)
    suffix = f" (and {more} more)" if more > 0 else ""
    return (
        f"step {step} was rejected {attempts} times, its budget; the last rejection "
        f"({last.layer} layer) said: {reasons}{suffix}"
    )


async def run_gated_step(
    step: str,
    budget: int,
    analyze: Callable[[int, list[FailedCheck]], Awaitable[StepOutput]],
    validate: Callable[[StepOutput], Awaitable[GateVerdict]],
    events: GateEvents | None = None,
) -> GateRecord:
    """Run one step through its gate, at most ``budget`` times; a spent budget fails the run, naming the step."""
    feedback: list[FailedCheck] = []
    rejections: list[GateVerdict] = []
    usage = TokenUsage()
    for attempt in range(1, budget + 1):
        if events:
            await events.started(attempt)
        output = await analyze(attempt, feedback)
        verdict = await validate(output)
        if events:
            await events.verdict(verdict)
        usage = usage + output.usage + verdict.usage
        if verdict.passed:
            if events:
                await events.succeeded(attempt)
            return GateRecord(step=step, attempts=attempt, passed=True, accepted_output=output.output,
                              rejections=rejections, usage=usage)
        rejections.append(_trimmed(verdict))
        feedback = verdict.failed_checks[:FEEDBACK_ITEMS]
        workflow.logger.info("gate rejected %s attempt %d (%s layer, %d checks failed)", step, attempt,
                             verdict.layer, verdict.failed_total)
        if events:
            if attempt < budget:
                await events.retrying(attempt + 1, feedback)
            else:
                await events.failed(attempt, verdict)
    raise ApplicationError(
        budget_spent_message(step, budget, rejections[-1]),
        GateRecord(step=step, attempts=budget, passed=False, accepted_output=None, rejections=rejections,
                   usage=usage),
        type="GateBudgetSpent",
        non_retryable=True,
    )

