"""The progress event contract: every step transition of a run, as subscribers receive it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from shared.codec import Keyring, KeyringError, open_text, seal_text
from shared.contracts import Branch, Contract, GateLayer, TokenUsage

EventKind = Literal[
    "run_started", "ingest_done", "step_started", "step_succeeded", "gate_verdict", "retry_with_feedback",
    "step_failed", "run_completed", "run_failed", "run_cancelled", "activity_failed", "activity_retry",
    "review_requested", "review_resolved", "step_quarantined",
]

# The kinds after which a run announces nothing more. A terminated run or one that timed out publishes no last
# event at all (no workflow code runs): subscribers learn of it from Temporal.
FINAL_KINDS: frozenset[str] = frozenset({"run_completed", "run_failed", "run_cancelled"})


class BranchPlan(Contract):
    branch: Branch
    rows: int
    chunks: int


class EventBody(Contract):
    """What happened; the fields a kind does not use stay empty."""

    plans: list[BranchPlan] = Field(default_factory=list, description="ingest_done: rows and chunks per branch.")
    passed: bool | None = None
    layer: GateLayer | None = None
    reasons: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=12)
    report: str | None = Field(default=None, description="run_completed: the report's artifact key.")
    summary: str | None = None
    usage: TokenUsage | None = None
    events_lost: int = 0
    activity: str | None = Field(default=None, description="activity_failed, activity_retry: the activity.")
    activity_attempt: int | None = Field(default=None, description="Its Temporal attempt (1, 2, 3 …).")
    output: str | None = Field(default=None, description="review_requested: the last output's artifact key.")
    sealed: str | None = Field(default=None, description="When payload encryption is on: `reasons` and `summary`, "
                               "which can quote CRM fields, sealed with the keyring (AES-GCM, `key-id:base64`); "
                               "`tollgate watch` opens them.")


class ProgressEvent(Contract):
    """One transition. ``event_id`` is derived from the run's own history, so a step that runs again after a
    crash or a retry announces itself under the same id; ``seq`` is given once per id, when first published."""

    event_id: str
    run_id: str
    kind: EventKind
    step: str = ""
    branch: Branch | None = None
    attempt: int = 0
    at: datetime = Field(description="When it happened, by the workflow's deterministic clock.")
    seq: int = Field(default=0, description="Per-run sequence number, 1, 2, 3 … with no gap; set on publishing.")
    published_at: datetime | None = None
    trace_id: str | None = None
    body: EventBody = EventBody()


class ProgressBatch(Contract):
    """Events the workflow publishes together, in order (a verdict and the step's success or retry)."""

    events: list[ProgressEvent] = Field(min_length=1, max_length=16)


def seal_event(keyring: Keyring, event: ProgressEvent) -> ProgressEvent:
    """The event with its free text (reasons, summary) sealed; counts, kinds, steps and ids stay readable."""
    body = event.body
    if body.sealed is not None or (not body.reasons and body.summary is None):
        return event
    text = json.dumps({"reasons": body.reasons, "summary": body.summary})
    sealed = body.model_copy(update={"reasons": [], "summary": None, "sealed": seal_text(keyring, text)})
    return event.model_copy(update={"body": sealed})


def open_event(keyring: Keyring | None, event: ProgressEvent) -> ProgressEvent:
    """The event with its sealed text restored (left sealed, with a note, without the right key)."""
    body = event.body
    if body.sealed is None:
        return event
    try:
        if keyring is None:
            raise KeyringError("no keyring")
        text = json.loads(open_text(keyring, body.sealed))
    except (KeyringError, ValueError):
        return event.model_copy(update={"body": body.model_copy(update={
            "summary": "(sealed: this reader has no key for it)"})})
    return event.model_copy(update={"body": body.model_copy(update={
        "reasons": text["reasons"], "summary": text["summary"], "sealed": None})})


def run_stream(run_id: str) -> str:
    return f"tollgate:run:{run_id}"


ALL_RUNS_STREAM = "tollgate:runs"
