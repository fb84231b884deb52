"""The CRM analysis workflow and its per-batch child: deterministic orchestration, no I/O.

History stays bounded whatever the export's size: the parent records one child workflow per batch of chunks
(``chunks_per_batch``), each child records the gates of its own chunks, and data travels as references.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from services.orchestrator.fanout import settle_all
    from services.orchestrator.gate import SpentBudget, run_gated_step, run_step
    from services.orchestrator.outbox import emit
    from services.orchestrator.review_desk import ReviewDesk
    from shared import steps
    from shared.contracts import (
        AggregateRequest,
        ArtifactRef,
        BatchRecord,
        BatchRequest,
        BatchResult,
        Branch,
        ChunkTask,
        DatasetRef,
        FailedCheck,
        GateRecord,
        GateVerdict,
        IngestRequest,
        IngestResult,
        InsightsTask,
        ReportRequest,
        RunOptions,
        RunProgress,
        RunRequest,
        RunResult,
        StepOutput,
        ValidationTask,
    )
    from shared.events import BranchPlan, EventBody, EventKind, ProgressBatch, ProgressEvent
    from shared.failures import failure_reason

# The modules workflow code runs in. They run outside Temporal's sandbox (shared/temporal.workflow_runner), so
# tests/test_determinism.py holds them deterministic.
WORKFLOW_MODULES = ("services.orchestrator.workflows", "services.orchestrator.gate", "services.orchestrator.fanout",
                    "services.orchestrator.review_desk")
# The one call workflow code makes that is neither Temporal's nor pure: handing progress events to the worker's
# publisher, skipped on replay (its module says why that is safe; tests/test_determinism.py allows it and no other).
SIDE_CHANNEL = "services.orchestrator.outbox"
GATE_MANIFESTS = "gate-manifests"  # workflow.patched id: gate records in the store, not in payloads
# workflow.patched id: fewer hand-offs between steps (docs/benchmarks.md). The orchestrator's own activities
# (record_batch, the report) are local activities, and a verdict is announced with what follows it in one local
# activity.
LEAN = "lean-hand-offs"
# workflow.patched id: a branch of one batch is gated in the run itself, not in a child workflow (two hand-offs and
# a workflow fewer, docs/benchmarks.md); its steps wait for a cancelled sibling to stop (run_step's wait_cancelled),
# so that no late result reaches the run while it fails and its run_failed event names every step that failed.
INLINE = "inline-batches"
# workflow.patched id: progress events go from workflow code to the worker's publisher (services/orchestrator/outbox),
# not through a local activity each: no round trip between the workflow and its worker and no history event per
# announcement (docs/benchmarks.md). Asked first thing in a run, so that every announcement of a run takes one path.
DIRECT = "direct-progress"
# workflow.patched id: the gate records of a branch gated in the run itself go to the store with the aggregation
# step's request, not in a local activity of their own: one workflow task with a local activity fewer for each such
# branch between the last verdict and aggregation (docs/benchmarks.md). Batches gated in child workflows are
# recorded as before, each as its child ends.
RECORDS = "records-with-aggregation"
# workflow.patched id: a branch of several batches cuts them in whole rounds of its chunks in flight (50 chunks a
# batch at 32 in flight are batches of 32): batches run one after another, and a batch of 50 ran a round of 32, then
# one of 18 with 14 slots idle, at every batch (docs/benchmarks.md). Still at most chunks_per_batch a batch. Asked only
# where it changes the batches, so that other runs record no marker.
ROUNDS = "whole-rounds"
ANALYZE = {"contacts": steps.ENRICH_CONTACTS, "opportunities": steps.ASSESS_OPPORTUNITIES}
VALIDATE = {"contacts": steps.VALIDATE_CONTACTS, "opportunities": steps.VALIDATE_OPPORTUNITIES}


def chunk_step(branch: Branch, index: int) -> str:
    return f"{branch}/chunk-{index:05d}"


def progress_event(run_id: str, kind: EventKind, step: str = "", attempt: int = 0, branch: Branch | None = None,
                   body: EventBody | None = None) -> ProgressEvent:
    """One progress event. Its id is made of what the history fixes (run, kind, step, attempt), so a replay
    announces the same id."""
    return ProgressEvent(
        event_id=f"{run_id}:{kind}:{step}:{attempt}", run_id=run_id, kind=kind, step=step, attempt=attempt,
        branch=branch, at=workflow.now(), body=body or EventBody(),
    )


async def announce(run_id: str, kind: EventKind, step: str = "", attempt: int = 0, branch: Branch | None = None,
                   body: EventBody | None = None) -> None:
    """Publish one progress event."""
    await publish(progress_event(run_id, kind, step, attempt, branch, body))


async def publish(*events: ProgressEvent) -> None:
    """Publish events in order: straight to the worker's publisher (services/orchestrator/outbox), or in runs
    started before that, with one local activity."""
    if workflow.patched(DIRECT):
        emit(events)
        return
    if len(events) == 1:
        await workflow.execute_local_activity(
            steps.PUBLISH_PROGRESS, events[0], result_type=int, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
    else:
        await workflow.execute_local_activity(
            steps.PUBLISH_PROGRESS_MANY, ProgressBatch(events=list(events)), result_type=int,
            start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=3),
        )


def budget_spent(run_id: str, step: str, spent: int, allowed: int) -> ApplicationError:
    return ApplicationError(
        f"run {run_id} stopped before {step}: its token budget is spent ({spent} of {allowed} tokens allowed "
        "here); raise TOLLGATE_RUN_TOKEN_BUDGET to let it go further",
        type="TokenBudgetSpent", non_retryable=True,
    )


def spent_handler(desk: ReviewDesk, run_id: str, options: RunOptions, branch: Branch | None,
                  chunk: ArtifactRef | None = None) -> SpentBudget | None:
    """What a spent budget does in this run: nothing (the run fails), or the desk's review or quarantine."""
    if options.on_spent == "fail":
        return None

    async def say(kind: EventKind, step: str, attempt: int, body: EventBody) -> None:
        await announce(run_id, kind, step, attempt, branch, body)

    return partial(desk.when_spent, options.on_spent, run_id, options.review_timeout, say, chunk)


class StepAnnouncer:
    """A gate's transitions as progress events; ``lean``: a verdict and what follows it in one local activity."""

    def __init__(self, run_id: str, step: str, branch: Branch | None, lean: bool = False) -> None:
        self.run_id, self.step, self.branch, self.lean = run_id, step, branch, lean

    def _event(self, kind: EventKind, attempt: int, body: EventBody | None = None) -> ProgressEvent:
        return progress_event(self.run_id, kind, self.step, attempt, self.branch, body)

    async def _say(self, kind: EventKind, attempt: int, body: EventBody | None = None) -> None:
        await publish(self._event(kind, attempt, body))

    @staticmethod
    def _verdict_body(verdict: GateVerdict) -> EventBody:
        return EventBody(passed=verdict.passed, layer=verdict.layer,
                         reasons=[c.reason for c in verdict.failed_checks[:12]], usage=verdict.usage)

    async def started(self, attempt: int) -> None:
        await self._say("step_started", attempt)

    async def verdict(self, verdict: GateVerdict) -> None:
        await self._say("gate_verdict", verdict.attempt, self._verdict_body(verdict))

    async def retrying(self, attempt: int, feedback: list[FailedCheck]) -> None:
        await self._say("retry_with_feedback", attempt, EventBody(reasons=[c.reason for c in feedback[:12]]))

    async def succeeded(self, attempt: int) -> None:
        await self._say("step_succeeded", attempt)

    async def failed(self, attempt: int, verdict: GateVerdict) -> None:
        await self._say("step_failed", attempt, EventBody(
            layer=verdict.layer, reasons=[c.reason for c in verdict.failed_checks[:12]]))

    async def passed(self, verdict: GateVerdict, attempt: int) -> None:
        if not self.lean:
            await self.verdict(verdict)
            await self.succeeded(attempt)
            return
        await publish(self._event("gate_verdict", verdict.attempt, self._verdict_body(verdict)),
                      self._event("step_succeeded", attempt))

    async def rejected(self, verdict: GateVerdict, next_attempt: int, feedback: list[FailedCheck]) -> None:
        if not self.lean:
            await self.verdict(verdict)
            await self.retrying(next_attempt, feedback)
            return
        await publish(self._event("gate_verdict", verdict.attempt, self._verdict_body(verdict)),
                      self._event("retry_with_feedback", next_attempt,
                                  EventBody(reasons=[c.reason for c in feedback[:12]])))


async def gate_batch(desk: ReviewDesk, request: BatchRequest, lean: bool, wait_cancelled: bool = False) -> BatchResult:
    """Gate a batch of chunks of one branch, at most ``max_parallel_chunks`` at a time; a chunk whose budget is
    spent waits at ``desk`` for its review while the others go on. ``wait_cancelled``: see ``run_step``."""
    options = request.options
    slots = asyncio.Semaphore(options.max_parallel_chunks)
    spent = 0

    async def gate_chunk(index: int, chunk: ArtifactRef) -> GateRecord:
        step = chunk_step(request.branch, index)

        async def analyze(attempt: int, feedback: list[FailedCheck]) -> StepOutput:
            task = ChunkTask(run_id=request.run_id, step=step, branch=request.branch, chunk=chunk,
                             attempt=attempt, feedback=feedback, reuse=options.reuse)
            return await run_step(
                ANALYZE[request.branch], task, StepOutput, options.analysis, options.analyzer_queue, step,
                wait_cancelled=wait_cancelled,
            )

        async def validate(output: StepOutput, ai: bool) -> GateVerdict:
            task = ValidationTask(run_id=request.run_id, step=step, attempt=output.attempt, output=output,
                                  ai_review_sample=options.ai_review_sample if ai else 0, chunk=chunk)
            return await run_step(
                VALIDATE[request.branch], task, GateVerdict, options.validation, options.validator_queue, step,
                wait_cancelled=wait_cancelled,
            )

        nonlocal spent
        async with slots:
            if request.token_allowance and spent >= request.token_allowance:
                raise budget_spent(request.run_id, step, spent, request.token_allowance)
            record = await run_gated_step(step, options.gate_attempts, analyze, validate,
                                          StepAnnouncer(request.run_id, step, request.branch, lean),
                                          spent_handler(desk, request.run_id, options, request.branch, chunk))
            spent += record.usage.tokens
            return record.model_copy(update={"chunk": chunk}) if record.outcome == "quarantined" else record

    gates = await settle_all(
        [gate_chunk(request.first_index + offset, chunk) for offset, chunk in enumerate(request.chunks)]
    )
    return BatchResult(gates=gates)


# Both workflow types are auto-upgrade (the versioned worker's default, shared/temporal.deployment_config; a
# behaviour named here would break unversioned workers): a run can wait a day for a reviewer, longer than a deploy
# should wait for it. A change that alters what running workflows do goes behind workflow.patched, and the replay
# tests (tests/test_replay.py) fail the build if one does not.
@workflow.defn(name=steps.BATCH_WORKFLOW)
class ChunkBatchWorkflow(ReviewDesk):
    """Gates a batch of chunks of one branch, at most ``max_parallel_chunks`` at a time; a chunk whose budget is
    spent waits here for its review while the others go on."""

    def __init__(self) -> None:
        ReviewDesk.__init__(self)

    @workflow.run
    async def run(self, request: BatchRequest) -> BatchResult:
        workflow.patched(DIRECT)
        return await gate_batch(self, request, lean=workflow.patched(LEAN), wait_cancelled=workflow.patched(INLINE))


@workflow.defn(name=steps.WORKFLOW)
class CrmAnalysisWorkflow(ReviewDesk):
    """Ingest, both branches in parallel, aggregation, gated insights, report."""

    def __init__(self) -> None:
        ReviewDesk.__init__(self)
        self._progress = RunProgress(stage="starting")
        self._tokens = 0
        self._manifests = False
        self._lean = False
        self._inline = False
        self._records_later = False
        self._pending: list[BatchRecord] = []  # gate records aggregation puts in the store (RECORDS)

    @workflow.query
    def progress(self) -> RunProgress:
        return self._progress

    def _advance(self, stage: str) -> None:
        self._progress = RunProgress(stage=stage)

    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        workflow.patched(DIRECT)
        self._lean = workflow.patched(LEAN)
        self._inline = workflow.patched(INLINE)
        self._records_later = workflow.patched(RECORDS)
        await announce(request.run_id, "run_started")
        try:
            result = await self._run(request)
        except BaseException as error:
            if is_cancelled_exception(error):
                # a cancelled run still says so; the announcement is a new command, allowed after the cancel
                await announce(request.run_id, "run_cancelled", self._progress.stage,
                               body=EventBody(summary="the run was cancelled"))
            elif isinstance(error, FailureError):
                await announce(request.run_id, "run_failed", self._progress.stage,
                               body=EventBody(summary=failure_reason(error)[:2000]))
            raise
        report = result.report
        left_out = f"; {report.quarantined_total} steps quarantined" if report.quarantined_total else ""
        reviewed = f"; {len(report.reviewed)} steps decided by a reviewer" if report.reviewed else ""
        reused = f"; {report.reused_steps} steps reused" if report.reused_steps else ""
        await announce(request.run_id, "run_completed", body=EventBody(
            report=result.report_location or result.report_markdown.key, usage=report.usage,
            summary=f"{report.summary.enriched_contacts} contacts enriched, {report.summary.assessed_opportunities} "
            f"opportunities assessed, {len(report.insights)} insights; "
            f"{sum(x.rejections for x in report.gates.rejections_by_layer)} gate rejections{left_out}{reviewed}"
            f"{reused}"))
        return result

    async def _run(self, request: RunRequest) -> RunResult:
        options = request.options
        self._advance(stage="ingest")
        ingested = await run_step(
            steps.INGEST,
            IngestRequest(run_id=request.run_id, contacts=request.contacts, contacts_name=request.contacts_name,
                          opportunities=request.opportunities, opportunities_name=request.opportunities_name,
                          contact_chunk_size=options.contact_chunk_size,
                          opportunity_chunk_size=options.opportunity_chunk_size,
                          decimal_separator=options.decimal_separator,
                          keep_extra_columns=options.keep_extra_columns),
            IngestResult, options.ingest, options.analyzer_queue, "ingest",
        )
        self._advance(stage="analysis")
        # Runs started by this version keep their gate records in the store, batch by batch, and pass counts; runs
        # started before it pass the lists, as their histories say.
        self._manifests = workflow.patched(GATE_MANIFESTS)
        await announce(request.run_id, "ingest_done", body=EventBody(plans=[
            BranchPlan(branch=d.branch, rows=d.rows, chunks=d.chunk_count or len(d.listed))
            for d in (ingested.contacts, ingested.opportunities)
        ], summary="; ".join(ingested.warnings) or None))
        if options.sequential_branches:  # a benchmark's baseline: the same work, one branch after the other
            contact_gates, contact_batches = await self._branch(request.run_id, ingested.contacts, options)
            opportunity_gates, opportunity_batches = await self._branch(request.run_id, ingested.opportunities,
                                                                        options)
        else:
            (contact_gates, contact_batches), (opportunity_gates, opportunity_batches) = await settle_all([
                self._branch(request.run_id, ingested.contacts, options),
                self._branch(request.run_id, ingested.opportunities, options),
            ])
        listed = not self._manifests

        self._advance(stage="aggregation")
        context = await run_step(
            steps.AGGREGATE,
            AggregateRequest(
                run_id=request.run_id, facts=ingested.facts, contacts=ingested.contacts,
                opportunities=ingested.opportunities,
                contact_outputs=[g.accepted_output for g in contact_gates if g.accepted_output] if listed else [],
                opportunity_outputs=[g.accepted_output for g in opportunity_gates if g.accepted_output]
                if listed else [],
                contact_batches=contact_batches, opportunity_batches=opportunity_batches, records=self._pending,
            ),
            ArtifactRef, options.ingest, options.analyzer_queue, "aggregate",
        )

        self._advance(stage="insights")

        async def analyze(attempt: int, feedback: list[FailedCheck]) -> StepOutput:
            task = InsightsTask(run_id=request.run_id, step="insights", attempt=attempt, context=context,
                                feedback=feedback, reuse=options.reuse)
            return await run_step(
                steps.WRITE_INSIGHTS, task, StepOutput, options.analysis, options.analyzer_queue, "insights",
            )

        async def validate(output: StepOutput, ai: bool) -> GateVerdict:
            task = ValidationTask(run_id=request.run_id, step="insights", attempt=output.attempt, output=output,
                                  ai_review_sample=options.ai_review_sample if ai else 0, insights_context=context)
            return await run_step(
                steps.VALIDATE_INSIGHTS, task, GateVerdict, options.validation, options.validator_queue, "insights",
            )

        if options.token_budget and self._tokens >= options.token_budget:
            raise budget_spent(request.run_id, "insights", self._tokens, options.token_budget)
        insights_gate = await run_gated_step("insights", options.gate_attempts, analyze, validate,
                                             StepAnnouncer(request.run_id, "insights", None, self._lean),
                                             spent_handler(self, request.run_id, options, None))

        self._advance(stage="report")
        result = await run_step(
            steps.WRITE_REPORT,
            ReportRequest(run_id=request.run_id, facts=ingested.facts, insights_output=insights_gate.accepted_output,
                          insights_context=context, contact_gates=contact_gates if listed else [],
                          opportunity_gates=opportunity_gates if listed else [], contact_batches=contact_batches,
                          opportunity_batches=opportunity_batches, insights_gate=insights_gate,
                          input_warnings=ingested.warnings),
            RunResult, options.validation, options.orchestrator_queue, "report", local=self._lean,
        )
        self._advance(stage="completed")
        return result

    async def _branch(self, run_id: str, dataset: DatasetRef, options: RunOptions) -> tuple[list[GateRecord], int]:
        """One child workflow per batch of chunks, one batch after another; a branch of one batch is gated here.
        Returns the gate records (runs from before the manifests) or none, and how many batches were recorded in
        the store."""
        gates: list[GateRecord] = []
        recorded = 0
        size = options.chunks_per_batch
        chunks = dataset.chunks
        here = self._inline and len(chunks) <= size  # one batch: gated in the run, no child workflow
        slots = options.max_parallel_chunks
        if not here and slots < size and size % slots and workflow.patched(ROUNDS):
            size -= size % slots  # whole rounds of the chunks in flight (ROUNDS)
        for number, start in enumerate(range(0, len(chunks), size)):
            allowance = 0
            if options.token_budget:
                # the two branches run at once: each batch may take half of what is left
                allowance = (options.token_budget - self._tokens) // 2
                if allowance <= 0:
                    raise budget_spent(run_id, f"{dataset.branch} batch {number}", self._tokens, options.token_budget)
            batch = BatchRequest(run_id=run_id, branch=dataset.branch, chunks=chunks[start:start + size],
                                 first_index=start, options=options, token_allowance=allowance)
            if here:
                result = await gate_batch(self, batch, lean=self._lean, wait_cancelled=True)
            else:
                result = await self._child_batch(batch, number)
            self._tokens += sum(gate.usage.tokens for gate in result.gates)
            if self._manifests:
                record = BatchRecord(run_id=run_id, branch=dataset.branch, number=number, gates=result.gates)
                if here and self._records_later:
                    self._pending.append(record)  # aggregation writes it (RECORDS)
                else:
                    await run_step(steps.RECORD_BATCH, record, ArtifactRef, options.validation,
                                   options.orchestrator_queue, f"{dataset.branch} batch {number}", local=self._lean)
                recorded += 1
            else:
                gates.extend(result.gates)
        return gates, recorded

    async def _child_batch(self, batch: BatchRequest, number: int) -> BatchResult:
        """A batch as a child workflow, whose failure the run reports as its own."""
        options = batch.options
        try:
            result: BatchResult = await workflow.execute_child_workflow(
                steps.BATCH_WORKFLOW, batch, result_type=BatchResult,
                id=f"{batch.run_id}.{batch.branch}.batch-{number:04d}", task_queue=options.orchestrator_queue,
            )
        except ChildWorkflowError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True) from error
            raise
        return result
