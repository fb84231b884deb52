"""Where a step whose gate budget is spent waits for a person, durably, inside its workflow.

The step's coroutine waits on a condition; a reviewer's decision arrives as a Temporal update (``review``), checked
by the update's validator before it is accepted (a step that is not waiting, a second decision, an approval of
output that does not parse, a retry or abort without a note) and, for a correction, by the deterministic layer of
the step's own gate before the decision stands: a correction that fails is refused with the reasons and the step
keeps waiting. Waiting costs nothing: no polling, no activity; the wait and any decision survive a restart of
the orchestrator because they are in the workflow's history. Nobody deciding within the run's review timeout
quarantines the step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.orchestrator.gate import Decided
    from shared.contracts import (
        ArtifactRef,
        GateVerdict,
        PendingReview,
        ReviewDecision,
        ReviewReceipt,
        ReviewRecord,
        SpentPolicy,
        StepOutput,
    )
    from shared.events import EventBody, EventKind

Announce = Callable[[EventKind, str, int, EventBody], Awaitable[None]]  # (kind, step, attempt, body)
SHOWN_REASONS = 12


def _waiting(desk: ReviewDesk) -> str:
    return ", ".join(sorted(desk.pending)) or "none"


class ReviewDesk:
    """A workflow's waiting steps; mixed into every workflow class that gates steps."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingReview] = {}
        self._checks: dict[str, Callable[[StepOutput], Awaitable[GateVerdict]]] = {}
        self._decided: dict[str, Decided] = {}

    @workflow.query(name="pending_reviews")
    def pending_reviews(self) -> list[PendingReview]:
        return list(self.pending.values())

    @workflow.update(name="review")
    async def review(self, decision: ReviewDecision) -> ReviewReceipt:
        correction: ArtifactRef | None = None
        if decision.action == "correct":
            pending = self.pending[decision.step]
            assert decision.correction is not None
            output = StepOutput(step=decision.step, attempt=pending.attempts, output=decision.correction,
                                records=decision.records)
            verdict = await self._checks[decision.step](output)
            if not verdict.passed:
                reasons = "; ".join(c.reason for c in verdict.failed_checks[:SHOWN_REASONS])
                raise ApplicationError(
                    f"the correction of {decision.step} fails the rules ({verdict.failed_total} checks): {reasons}; "
                    "the step is still waiting", type="CorrectionRejected")
            if decision.step not in self.pending or decision.step in self._decided:
                raise ApplicationError(f"step {decision.step} was decided while the correction was checked",
                                       type="ReviewConflict")
            correction = decision.correction
        record = ReviewRecord(action=decision.action, reviewer=decision.reviewer, note=decision.note,
                              decided_at=workflow.now())
        self._decided[decision.step] = Decided(record=record, correction=correction)
        return ReviewReceipt(step=decision.step, action=decision.action, message=_describe(record))

    @review.validator
    def _admissible(self, decision: ReviewDecision) -> None:
        pending = self.pending.get(decision.step)
        if pending is None or decision.step in self._decided:
            raise ValueError(f"step {decision.step} is not waiting for a review (waiting here: {_waiting(self)})")
        if decision.action == "approve" and pending.last_output.schema_error is not None:
            raise ValueError(f"nothing to approve: the last output of {decision.step} did not parse "
                             f"({pending.last_output.schema_error[:200]}); correct it, retry or quarantine it")
        if decision.action == "correct" and decision.correction is None:
            raise ValueError("a correction needs the corrected records")
        if decision.action in ("retry", "abort") and not decision.note.strip():
            raise ValueError(f"--{decision.action} needs a --note: "
                             + ("the model reads it with the validator's reasons" if decision.action == "retry"
                                else "the run's failure names it"))

    async def when_spent(self, policy: SpentPolicy, run_id: str, review_timeout: timedelta, announce: Announce,
                         chunk: ArtifactRef | None, step: str, attempts: int, output: StepOutput, verdict: GateVerdict,
                         check: Callable[[StepOutput], Awaitable[GateVerdict]]) -> Decided:
        """``quarantine``: leave the step out at once. ``review``: wait for a decision, at most ``review_timeout``."""
        if policy == "quarantine":
            decided = Decided(record=ReviewRecord(action="quarantine", reviewer="policy", decided_at=workflow.now(),
                                                  note="the run's policy quarantines a step whose budget is spent"))
            await announce("step_quarantined", step, attempts, EventBody(summary=decided.record.note, reasons=[
                c.reason for c in verdict.failed_checks[:SHOWN_REASONS]]))
            return decided
        now = workflow.now()
        self.pending[step] = PendingReview(
            run_id=run_id, step=step, workflow_id=workflow.info().workflow_id, since=now, deadline=now + review_timeout,
            attempts=attempts, last_output=output, chunk=chunk, layer=verdict.layer, reasons=verdict.failed_checks,
            failed_total=verdict.failed_total)
        self._checks[step] = check
        await announce("review_requested", step, attempts, EventBody(
            summary=f"waiting for a reviewer: tollgate review {run_id} {step}", layer=verdict.layer,
            output=output.output.key,
            reasons=[c.reason for c in verdict.failed_checks[:SHOWN_REASONS]]))
        try:
            await workflow.wait_condition(lambda: step in self._decided, timeout=review_timeout)
            decided = self._decided.pop(step)
        except TimeoutError:
            decided = Decided(record=ReviewRecord(
                action="quarantine", reviewer="timeout", decided_at=workflow.now(), timed_out=True,
                note=f"no decision within the review timeout ({review_timeout})"))
        finally:
            self.pending.pop(step, None)
            self._checks.pop(step, None)
        await announce("review_resolved", step, attempts, EventBody(summary=_describe(decided.record)))
        if decided.record.action == "quarantine":
            await announce("step_quarantined", step, attempts, EventBody(summary=_describe(decided.record)))
        return decided


def _describe(record: ReviewRecord) -> str:
    verb = {"approve": "approved", "correct": "corrected", "retry": "sent back for a new budget",
            "quarantine": "quarantined", "abort": "aborted"}[record.action]
    who = "nobody decided in time" if record.timed_out else f"by {record.reviewer}"
    return f"{verb} {who}" + (f": {record.note}" if record.note and not record.timed_out else "")
