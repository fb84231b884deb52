"""The validation gate, as workflow code: analyze, validate, and on rejection re-run that step alone.

Each call is a Temporal activity, so every attempt and every verdict is checkpointed in the workflow history:
a crash between the analysis and its verdict resumes at the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Protocol, TypeVar, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from shared.contracts import (
        ArtifactRef,
        FailedCheck,
        GateRecord,
        GateVerdict,
        ReviewRecord,
        StepOutput,
        StepPolicy,
        TokenUsage,
    )

R = TypeVar("R", bound=BaseModel)


class GateEvents(Protocol):
    """Where a gate announces its transitions (progress events); every method is awaited in workflow code."""

    async def started(self, attempt: int) -> None: ...
    async def verdict(self, verdict: GateVerdict) -> None: ...
    async def retrying(self, attempt: int, feedback: list[FailedCheck]) -> None: ...
    async def succeeded(self, attempt: int) -> None: ...
    async def failed(self, attempt: int, verdict: GateVerdict) -> None: ...
    async def passed(self, verdict: GateVerdict, attempt: int) -> None:
        """The verdict, then the step's success."""
    async def rejected(self, verdict: GateVerdict, next_attempt: int, feedback: list[FailedCheck]) -> None:
        """The verdict, then the retry that follows it."""

# Failures that no retry of the same activity can fix: Temporal gives up on them at once.
NON_RETRYABLE = ["BadInput", "LlmRequestRejected", "GateBudgetSpent", "StepFailed", "TokenBudgetSpent",
                 "ReviewAborted", "ArtifactChanged", "ArtifactExists"]
FEEDBACK_ITEMS = 12  # reasons handed to the retried step; more only dilutes a small model's attention
KEPT_REASONS = 5  # reasons per rejection kept in the run's history and report


async def run_step(activity: str, argument: BaseModel, result_type: type[R], policy: StepPolicy,
                   task_queue: str, step: str, *, local: bool = False, wait_cancelled: bool = False) -> R:
    """Run one activity under its step class's timeouts and retry policy; its result is checkpointed.

    ``local``: an activity of the orchestrator's own, run by the worker that runs the workflow (a local activity:
    no task-queue round trip, no workflow task of its own; its result is checkpointed as a marker).
    ``wait_cancelled``: a cancelled step waits until its worker has stopped it (it learns of the cancel at its next
    heartbeat, within the workers' heartbeat interval) instead of being abandoned at once; a fan-out that fails
    then ends only after nothing of it runs any more, and no late result can reach a workflow that is failing.
    When Temporal gives up on it, the error names the step, the activity and the limit it hit."""
    retry_policy = RetryPolicy(
        initial_interval=policy.initial_retry,
        backoff_coefficient=2.0,
        maximum_interval=max(policy.max_retry_interval, policy.initial_retry),
        maximum_attempts=policy.max_attempts,
        non_retryable_error_types=NON_RETRYABLE,
    )
    try:
        if local:
            result = await workflow.execute_local_activity(
                activity,
                argument,
                result_type=result_type,
                start_to_close_timeout=policy.start_to_close,
                schedule_to_close_timeout=policy.schedule_to_close,
                retry_policy=retry_policy,
            )
        else:
            result = await workflow.execute_activity(
                activity,
                argument,
                result_type=result_type,
                task_queue=task_queue,
                start_to_close_timeout=policy.start_to_close,
                schedule_to_close_timeout=policy.schedule_to_close,
                heartbeat_timeout=policy.heartbeat,
                retry_policy=retry_policy,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED if wait_cancelled
                else ActivityCancellationType.TRY_CANCEL,
            )
    except ActivityError as error:
        if is_cancelled_exception(error):
            raise
        if error.retry_state == RetryState.CANCEL_REQUESTED:
            # it was asked to stop (the run was cancelled, or a sibling failed) and ended otherwise before it heard:
            # what it did after being asked is not its failure, and the run ends as it was going to
            raise asyncio.CancelledError(f"step {step}: {activity} was cancelled") from None
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type in NON_RETRYABLE:
            raise cause from None  # it says what is wrong already (a bad file, a rejected request)
        raise step_failure(step, activity, policy, error) from None
    return cast(R, result)


def _seconds(value: timedelta | None) -> str:
    total = int(value.total_seconds()) if value else 0
    return f"{total // 60} min {total % 60} s" if total >= 60 and total % 60 else (
        f"{total // 60} min" if total >= 60 else f"{total} s")


def step_failure(step: str, activity: str, policy: StepPolicy, error: ActivityError) -> ApplicationError:
    """What Temporal gave up on, in words: the step, its activity, the limit and the last attempt's error."""
    cause = error.cause
    if isinstance(cause, TimeoutError):
        limits = {
            TimeoutType.START_TO_CLOSE: f"its start-to-close timeout ({_seconds(policy.start_to_close)})",
            TimeoutType.HEARTBEAT: f"its heartbeat timeout ({_seconds(policy.heartbeat)}: the worker went quiet)",
            TimeoutType.SCHEDULE_TO_CLOSE: f"its schedule-to-close limit ({_seconds(policy.schedule_to_close)})",
            TimeoutType.SCHEDULE_TO_START: "its schedule-to-start timeout (no worker picked it up)",
        }
        last = f"the last attempt hit {limits.get(cause.type or TimeoutType.START_TO_CLOSE, 'a timeout')}"
    else:
        said = cause.message if isinstance(cause, FailureError) else str(cause) if cause is not None else error.message
        last = f"the last attempt said: {said}"
    if error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        gave_up = f"gave up after {policy.max_attempts} attempts (its retry limit)"
    elif error.retry_state == RetryState.TIMEOUT:
        gave_up = f"gave up when its schedule-to-close limit ({_seconds(policy.schedule_to_close)}) ran out"
    else:
        gave_up = "gave up"
    return ApplicationError(f"step {step}: activity {activity} {gave_up}; {last}"[:1500], type="StepFailed",
                            non_retryable=True)


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


async def _even_if_cancelled(*announcements: Callable[[], Awaitable[None]]) -> None:
    """Announce a spent budget; a cancel (a sibling failed and the fan-out is settling) stops the announcements
    but not the failure that follows, so the run's error names this step whether or not it was announced."""
    for announce in announcements:
        try:
            await announce()
        except BaseException as error:
            if not is_cancelled_exception(error):
                raise
            return


class SpentBudget(Protocol):
    """What a step whose budget is spent does instead of failing: waits for a person (``review``) or leaves its
    work out (``quarantine``). Returns the decision taken."""

    async def __call__(self, step: str, attempts: int, output: StepOutput, verdict: GateVerdict,
                       check: Callable[[StepOutput], Awaitable[GateVerdict]]) -> Decided: ...


@dataclass(frozen=True)
class Decided:
    """A decision on a spent step, and for ``correct`` the corrected output (it passed the rules)."""

    record: ReviewRecord
    correction: ArtifactRef | None = None


Validate = Callable[[StepOutput, bool], Awaitable[GateVerdict]]


async def run_gated_step(
    step: str,
    budget: int,
    analyze: Callable[[int, list[FailedCheck]], Awaitable[StepOutput]],
    validate: Validate,
    events: GateEvents | None = None,
    when_spent: SpentBudget | None = None,
) -> GateRecord:
    """Run one step through its gate, at most ``budget`` times. A spent budget fails the run, naming the step,
    unless ``when_spent`` decides otherwise: approve or correct (accepted, marked so), retry (a new budget, the
    reviewer's note added to the feedback), quarantine (the step is left out), abort (the run fails)."""
    feedback: list[FailedCheck] = []
    rejections: list[GateVerdict] = []
    reviews: list[ReviewRecord] = []
    usage = TokenUsage()
    first = 1
    while True:
        output: StepOutput | None = None
        verdict: GateVerdict | None = None
        for attempt in range(first, first + budget):
            if events:
                await events.started(attempt)
            output = await analyze(attempt, feedback)
            if output.reused_from is not None:  # validated in an earlier run over the same work
                if events:
                    await events.succeeded(attempt)
                return GateRecord(step=step, attempts=attempt, passed=True, accepted_output=output.output,
                                  rejections=rejections, usage=usage, outcome="reused", reviews=reviews,
                                  reused_from=output.reused_from)
            verdict = await validate(output, True)
            usage = usage + output.usage + verdict.usage
            if verdict.passed:
                if events:
                    await events.passed(verdict, attempt)
                return GateRecord(step=step, attempts=attempt, passed=True, accepted_output=output.output,
                                  rejections=rejections, usage=usage, reviews=reviews)
            rejections.append(_trimmed(verdict))
            feedback = verdict.failed_checks[:FEEDBACK_ITEMS]
            workflow.logger.info("gate rejected %s attempt %d (%s layer, %d checks failed)", step, attempt,
                                 verdict.layer, verdict.failed_total)
            if events and attempt < first + budget - 1:
                await events.rejected(verdict, attempt + 1, feedback)
            elif events:
                await _even_if_cancelled(partial(events.verdict, verdict), partial(events.failed, attempt, verdict))
        assert output is not None and verdict is not None
        attempts = first + budget - 1
        if when_spent is None:
            raise ApplicationError(
                budget_spent_message(step, attempts, rejections[-1]),
                GateRecord(step=step, attempts=attempts, passed=False, accepted_output=None,
                           rejections=rejections, usage=usage),
                type="GateBudgetSpent",
                non_retryable=True,
            )
        decided = await when_spent(step, attempts, output, verdict, lambda out: validate(out, False))
        review = decided.record
        reviews.append(review)
        record = GateRecord(step=step, attempts=attempts, passed=False, accepted_output=None, rejections=rejections,
                            usage=usage, outcome="quarantined", reviews=reviews)
        if review.action == "approve":
            return record.model_copy(update={"passed": True, "accepted_output": output.output, "outcome": "approved"})
        if review.action == "correct":
            return record.model_copy(update={"passed": True, "accepted_output": decided.correction,
                                             "outcome": "corrected"})
        if review.action == "quarantine":
            return record
        if review.action == "abort":
            raise ApplicationError(
                f"step {step}: the reviewer {review.reviewer} aborted the run after {attempts} rejected attempts: "
                f"{review.note or 'no reason given'}", type="ReviewAborted", non_retryable=True)
        # retry: a new budget, with the reviewer's note ahead of the validator's reasons
        feedback = [FailedCheck(check="reviewer", reason=f"A reviewer says: {review.note}"[:300]),
                    *feedback[:FEEDBACK_ITEMS - 1]]
        first = attempts + 1
        if events:
            await events.retrying(first, feedback)
