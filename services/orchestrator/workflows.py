"""The CRM analysis workflow and its per-batch child: deterministic orchestration, no I/O.

History stays bounded whatever the export's size: the parent records one child workflow per batch of chunks
(``chunks_per_batch``), each child records the gates of its own chunks, and data travels as references.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from services.orchestrator.gate import run_gated_step, run_step
    from shared import steps
    from shared.contracts import (
        AggregateRequest,
        ArtifactRef,
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

ANALYZE = {"contacts": steps.ENRICH_CONTACTS, "opportunities": steps.ASSESS_OPPORTUNITIES}
VALIDATE = {"contacts": steps.VALIDATE_CONTACTS, "opportunities": steps.VALIDATE_OPPORTUNITIES}


def chunk_step(branch: Branch, index: int) -> str:
    return f"{branch}/chunk-{index:05d}"


@workflow.defn(name=steps.BATCH_WORKFLOW)
class ChunkBatchWorkflow:
    """Gates a batch of chunks of one branch, at most ``max_parallel_chunks`` at a time."""

    @workflow.run
    async def run(self, request: BatchRequest) -> BatchResult:
        options = request.options
        slots = asyncio.Semaphore(options.max_parallel_chunks)

        async def gate_chunk(index: int, chunk: ArtifactRef) -> GateRecord:
            step = chunk_step(request.branch, index)

            async def analyze(attempt: int, feedback: list[FailedCheck]) -> StepOutput:
                task = ChunkTask(run_id=request.run_id, step=step, branch=request.branch, chunk=chunk,
                                 attempt=attempt, feedback=feedback)
                return await run_step(
                    ANALYZE[request.branch], task, StepOutput, options.analysis, options.analyzer_queue,
                )

            async def validate(output: StepOutput) -> GateVerdict:
                task = ValidationTask(run_id=request.run_id, step=step, attempt=output.attempt, output=output,
                                      ai_review_sample=options.ai_review_sample,
                                      chunk=chunk)
                return await run_step(
                    VALIDATE[request.branch], task, GateVerdict, options.validation, options.validator_queue,
                )

            async with slots:
                return await run_gated_step(step, options.gate_attempts, analyze, validate)

        gates = await asyncio.gather(
            *(gate_chunk(request.first_index + offset, chunk) for offset, chunk in enumerate(request.chunks))
        )
        return BatchResult(gates=list(gates))


@workflow.defn(name=steps.WORKFLOW)
class CrmAnalysisWorkflow:
    """Ingest, both branches in parallel, aggregation, gated insights, report."""

    def __init__(self) -> None:
        self._progress = RunProgress(stage="starting")

    @workflow.query
    def progress(self) -> RunProgress:
        return self._progress

    def _advance(self, **changes: object) -> None:
        self._progress = self._progress.model_copy(update=changes)

    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        options = request.options
        self._advance(stage="ingest")
        ingested = await run_step(
            steps.INGEST,
            IngestRequest(run_id=request.run_id, contacts_path=request.contacts_path,
                          opportunities_path=request.opportunities_path,
                          contact_chunk_size=options.contact_chunk_size,
                          opportunity_chunk_size=options.opportunity_chunk_size),
            IngestResult, options.ingest, options.analyzer_queue,
        )
        self._advance(stage="analysis",
                      chunks_total=len(ingested.contacts.chunks) + len(ingested.opportunities.chunks))
        contact_gates, opportunity_gates = await asyncio.gather(
            self._branch(request.run_id, ingested.contacts, options),
            self._branch(request.run_id, ingested.opportunities, options),
        )

        self._advance(stage="aggregation")
        context = await run_step(
            steps.AGGREGATE,
            AggregateRequest(
                run_id=request.run_id, facts=ingested.facts, contacts=ingested.contacts,
                opportunities=ingested.opportunities,
                contact_outputs=[g.accepted_output for g in contact_gates if g.accepted_output],
                opportunity_outputs=[g.accepted_output for g in opportunity_gates if g.accepted_output],
            ),
            ArtifactRef, options.ingest, options.analyzer_queue,
        )

        self._advance(stage="insights")

        async def analyze(attempt: int, feedback: list[FailedCheck]) -> StepOutput:
            task = InsightsTask(run_id=request.run_id, step="insights", attempt=attempt, context=context,
                                feedback=feedback)
            return await run_step(
                steps.WRITE_INSIGHTS, task, StepOutput, options.analysis, options.analyzer_queue,
            )

        async def validate(output: StepOutput) -> GateVerdict:
            task = ValidationTask(run_id=request.run_id, step="insights", attempt=output.attempt, output=output,
                                  ai_review_sample=options.ai_review_sample,
                                  insights_context=context)
            return await run_step(
                steps.VALIDATE_INSIGHTS, task, GateVerdict, options.validation, options.validator_queue,
            )

        insights_gate = await run_gated_step("insights", options.gate_attempts, analyze, validate)
        self._count(insights_gate)

        self._advance(stage="report")
        assert insights_gate.accepted_output is not None
        result = await run_step(
            steps.WRITE_REPORT,
            ReportRequest(run_id=request.run_id, facts=ingested.facts, insights_output=insights_gate.accepted_output,
                          insights_context=context, contact_gates=contact_gates, opportunity_gates=opportunity_gates,
                          insights_gate=insights_gate),
            RunResult, options.validation, options.orchestrator_queue,
        )
        self._advance(stage="completed")
        return result

    def _count(self, gate: GateRecord) -> None:
        self._advance(rejections=self._progress.rejections + len(gate.rejections))

    async def _branch(self, run_id: str, dataset: DatasetRef, options: RunOptions) -> list[GateRecord]:
        """One child workflow per batch of chunks, one batch after another."""
        gates: list[GateRecord] = []
        size = options.chunks_per_batch
        for number, start in enumerate(range(0, len(dataset.chunks), size)):
            batch = BatchRequest(run_id=run_id, branch=dataset.branch, chunks=dataset.chunks[start:start + size],
                                 first_index=start, options=options)
            try:
                result: BatchResult = await workflow.execute_child_workflow(
                    steps.BATCH_WORKFLOW, batch, result_type=BatchResult,
                    id=f"{run_id}.{dataset.branch}.batch-{number:04d}",
                    task_queue=options.orchestrator_queue,
                )
            except ChildWorkflowError as error:
                cause = error.cause
                if isinstance(cause, ApplicationError):
                    raise ApplicationError(cause.message, *cause.details, type=cause.type,
                                           non_retryable=True) from error
                raise
            gates.extend(result.gates)
            for gate in result.gates:
                self._count(gate)
            self._advance(chunks_done=self._progress.chunks_done + len(result.gates))
        return gates
