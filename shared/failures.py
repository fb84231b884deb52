"""Reading a Temporal failure chain: the innermost message is the one that says what went wrong."""

from __future__ import annotations

from temporalio.exceptions import FailureError


def failure_reason(error: BaseException) -> str:
    """The innermost message of a Temporal failure chain (workflow, child workflow, activity, application)."""
    message = str(error)
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, FailureError) and cause.message:
            message = cause.message
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return message
