"""Reading a Temporal failure chain: the innermost message is the one that says what went wrong."""

from __future__ import annotations

from temporalio.exceptions import CancelledError, FailureError, TerminatedError, TimeoutError


def failure_reason(error: BaseException) -> str:
    """The innermost message of a Temporal failure chain (workflow, child workflow, activity, application)."""
    message = str(error)
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, FailureError) and cause.message:
            message = cause.message
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return message


def run_ending(error: BaseException) -> str:
    """How a run that did not complete ended, as a sentence: 'failed: <reason>', 'was cancelled' …"""
    cause = getattr(error, "cause", None)
    if isinstance(cause, CancelledError):
        return "was cancelled"
    if isinstance(cause, TerminatedError):
        return f"was terminated: {cause.message}" if cause.message else "was terminated"
    if isinstance(cause, TimeoutError):
        return "timed out (its execution timeout ran out)"
    return f"failed: {failure_reason(error)}"
