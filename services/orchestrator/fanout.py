"""Fan-outs in workflow code that settle every sibling before they return or raise.

``asyncio.gather`` hands the first failure to its caller at once and leaves the siblings running: in the same
workflow activation they go on issuing commands (progress markers, activities) after the workflow has issued its
``FailWorkflowExecution``. The server rejects that command sequence on every retry of the workflow task, and the run
never ends. ``settle_all`` cancels the siblings of a failed task and waits until each has settled, so the failure is
the last command the workflow issues.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from shared.failures import failure_reason

T = TypeVar("T")

NAMED_FAILURES = 20  # failures named in one combined error's message; the rest are counted
COMBINED = "StepsFailed"


async def settle_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently and return the results in order; on the first failure cancel the rest and, once every task
    has settled, raise: the failure itself, or one error naming every task that failed (cancellations aside).

    If this workflow is cancelled meanwhile (by a user, or by a parent whose other branch failed), its tasks are
    cancelled with it, but steps that had already failed are still raised, so that whoever waits names them."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    if not tasks:
        return []
    try:
        await workflow.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        pass
    else:
        if all(task.done() and _exception(task) is None for task in tasks):
            return [task.result() for task in tasks]
    await _cancel_and_settle(tasks)
    errors = [e for e in (_exception(task) for task in tasks) if e is not None and not is_cancelled_exception(e)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise combined_failure(errors)
    raise asyncio.CancelledError()  # nothing failed but by cancellation


async def _cancel_and_settle(tasks: Sequence[asyncio.Future[T]]) -> None:
    """Cancel every task still running and wait until all have settled, even if this workflow is cancelled while
    it waits (a cancel must not cut the settling short: the siblings would go on issuing commands)."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workflow.wait(pending)


def combined_failure(errors: Sequence[BaseException]) -> ApplicationError:
    """One error for several siblings that failed, naming each (bounded); combined errors of nested fan-outs (a
    batch's chunks, then the run's branches) are flattened, so every failed step is named once, at one level."""
    reasons: list[str] = []
    for error in errors:
        if isinstance(error, ApplicationError) and error.type == COMBINED and error.details:
            reasons.extend(str(reason) for reason in error.details[0])
        else:
            reasons.append(failure_reason(error))
    named = reasons[:NAMED_FAILURES]
    more = f" (and {len(reasons) - len(named)} more)" if len(reasons) > len(named) else ""
    return ApplicationError(f"{len(reasons)} steps failed{more}: " + " | ".join(named), reasons, type=COMBINED,
                            non_retryable=True)


def _exception(task: asyncio.Future[T]) -> BaseException | None:
    """What a settled task raised (a cancellation counts as one); None for a result or a task still running."""
    if not task.done():
        return None
    return asyncio.CancelledError() if task.cancelled() else task.exception()
