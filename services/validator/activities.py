"""The validator's activities: one gate verdict per analysis attempt, deterministic layer first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

from opentelemetry.trace import Span
from temporalio import activity

from services.validator import checks, claims, judge
from shared import reuse, steps
from shared.artifacts import ArtifactStore
from shared.contracts import (
    MAX_FAILED_CHECKS,
    ArtifactRef,
    CatalogueFacts,
    ContactChunkOutput,
    ContactRecord,
    FailedCheck,
    GateVerdict,
    InsightsContext,
    InsightsOutput,
    OpportunityChunkOutput,
    OpportunityRecord,
    TokenUsage,
    ValidationTask,
)
from shared.datasets import read_contacts, read_opportunities
from shared.llm import LlmCall, ModelEndpoint
from shared.settings import Settings
from shared.taxonomy import OPEN_STAGES, risk_allowed, stage_key, title_rule
from shared.telemetry import tracer

AiLayer = Callable[[], Awaitable[tuple[list[FailedCheck], TokenUsage]]]


def _verdict(task: ValidationTask, layer: str, failures: list[FailedCheck], usage: TokenUsage) -> GateVerdict:
    return GateVerdict(
        step=task.step, attempt=task.attempt, passed=not failures, layer="ai" if layer == "ai" else "deterministic",
        failed_checks=failures[:MAX_FAILED_CHECKS], failed_total=len(failures), usage=usage,
    )


def _seed(task: ValidationTask) -> str:
    """A fresh sample for every attempt, the same one on a replay or a retry of the same attempt."""
    return f"{task.run_id}:{task.step}:{task.attempt}"


def _layer_span(layer: str, task: ValidationTask) -> AbstractContextManager[Span]:
    return tracer().start_as_current_span(f"gate.{layer}", attributes={
        "tollgate.run_id": task.run_id, "tollgate.step": task.step, "tollgate.attempt": task.attempt,
        "tollgate.gate.layer": layer,
    })


def _record(span: Span, failures: list[FailedCheck]) -> None:
    """The verdict on the span: check names and counts only; reasons quote CRM fields and stay out."""
    span.set_attribute("tollgate.gate.passed", not failures)
    span.set_attribute("tollgate.gate.failed_total", len(failures))
    span.set_attribute("tollgate.gate.failed_checks", sorted({f.check for f in failures}))


Rec = TypeVar("Rec", ContactRecord, OpportunityRecord)
Out = TypeVar("Out", ContactChunkOutput, OpportunityChunkOutput)


class ChunkInputs(Generic[Rec, Out]):
    """A chunk validation's deterministic layer: its records and the output read and checked on one worker thread
    (one hand-over to the event loop, not three); the AI layer then reads what it read."""

    def __init__(self, store: ArtifactStore, task: ValidationTask,
                 read: Callable[[ArtifactStore, ArtifactRef], list[Rec]], output_type: type[Out],
                 check: Callable[[list[Rec], Out], list[FailedCheck]]) -> None:
        assert task.chunk is not None, "a chunk validation needs its chunk"
        self.store, self.task, self.chunk = store, task, task.chunk
        self.read: Callable[[ArtifactStore, ArtifactRef], list[Rec]] = read
        self.output_type: type[Out] = output_type
        self.check: Callable[[list[Rec], Out], list[FailedCheck]] = check
        self.records: list[Rec] = []
        self.output: Out | None = None

    def read_output(self) -> Out:
        assert self.output is not None, "the AI layer runs after the deterministic layer read the output"
        return self.output

    def __call__(self) -> list[FailedCheck]:
        self.records = self.read(self.store, self.chunk)
        self.output = self.store.read_model(self.task.output.output, self.output_type)
        return self.check(self.records, self.output)


class ValidatorActivities:
    def __init__(self, store: ArtifactStore, settings: Settings, endpoint: ModelEndpoint) -> None:
        self.store = store
        self.settings = settings
        self.endpoint = endpoint

    async def _judge(self, task: ValidationTask, kind: str, ids: list[str], prompt: str,
                     instructions: str = judge.JUDGE_INSTRUCTIONS) -> tuple[list[FailedCheck], TokenUsage]:
        return await judge.ask_judge(self.endpoint, self.settings,
                                     LlmCall(task.run_id, task.step, task.attempt, "validator"), kind, ids, prompt,
                                     instructions)

    async def _gate(self, task: ValidationTask, deterministic: Callable[[], list[FailedCheck]], ai: AiLayer,
                    small: bool = True) -> GateVerdict:
        """The deterministic layer, then (if it passed) the AI layer. ``small``: the deterministic layer reads and
        checks one chunk (store.small), not a whole run's catalogue (a worker thread)."""
        with _layer_span("deterministic", task) as span:
            if task.output.schema_error is not None:
                failures = [FailedCheck(check="schema", reason=task.output.schema_error[:300])]
            else:
                failures = await (self.store.small(deterministic) if small else asyncio.to_thread(deterministic))
            _record(span, failures)
        if failures:
            verdict = _verdict(task, "deterministic", failures, TokenUsage())
        else:
            with _layer_span("ai", task) as span:
                ai_failures, usage = await ai()
                _record(span, ai_failures)
            verdict = _verdict(task, "ai", ai_failures, usage)
        activity.logger.info(
            "gate %s attempt %d: %s (%s layer%s)", task.step, task.attempt,
            "passed" if verdict.passed else "rejected", verdict.layer,
            "" if verdict.passed else f", {verdict.failed_total} failed checks",
        )
        produced = task.output
        if verdict.passed and produced.reuse_key and produced.reused_from is None:
            # found again by a later run over the same work (a reviewer's correction has no key: it is not)
            await self.store.small(reuse.record, self.store, produced.reuse_key, reuse.ReuseEntry(
                run_id=task.run_id, step=task.step, output=produced.output, records=produced.records))
        return verdict

    @activity.defn(name=steps.VALIDATE_CONTACTS)
    async def validate_contact_chunk(self, task: ValidationTask) -> GateVerdict:
        read = ChunkInputs(self.store, task, read_contacts, ContactChunkOutput, checks.check_contacts)

        async def ai() -> tuple[list[FailedCheck], TokenUsage]:
            records, output = read.records, read.read_output()
            # a title the taxonomy settles completely leaves nothing to judge: the rules held it to its labels
            judged = {r.id for r in records if not title_rule(r.title).settled}
            sample = judge.attempt_sample([e for e in output.enrichments if e.id in judged], task.ai_review_sample,
                                          _seed(task))
            return await self._judge(task, "contact", [e.id for e in sample], judge.contacts_prompt(records, sample))

        return await self._gate(task, read, ai)

    @activity.defn(name=steps.VALIDATE_OPPORTUNITIES)
    async def validate_opportunity_chunk(self, task: ValidationTask) -> GateVerdict:
        read = ChunkInputs(self.store, task, read_opportunities, OpportunityChunkOutput, checks.check_opportunities)

        async def ai() -> tuple[list[FailedCheck], TokenUsage]:
            records, output = read.records, read.read_output()
            # closed deals are assessed in code and fully covered by the rules; the model reviews the open ones
            # a closed deal, or an open one whose stage and amount allow one risk only, is the rules' business
            judged = {r.id for r in records
                      if stage_key(r.stage) in OPEN_STAGES and len(risk_allowed(r.stage, r.amount)) > 1}
            sample = judge.attempt_sample([r for r in output.risks if r.id in judged], task.ai_review_sample,
                                          _seed(task))
            return await self._judge(task, "opportunity", [r.id for r in sample],
                                     judge.opportunities_prompt(records, sample))

        return await self._gate(task, read, ai)

    def _insights_inputs(self, task: ValidationTask) -> tuple[CatalogueFacts, claims.EntityIndex, InsightsOutput]:
        """The catalogue's facts as models and its entities' names as an index of columns (two a deal)."""
        assert task.insights_context is not None, "an insights validation needs its context"
        context = self.store.read_model(task.insights_context, InsightsContext)
        raw = self.store.read_bytes(context.catalogue)
        catalogue = CatalogueFacts.model_validate_json(raw)
        output = InsightsOutput.model_construct(insights=[]) if task.output.schema_error else \
            self.store.read_model(task.output.output, InsightsOutput)
        return catalogue, claims.EntityIndex.read(raw), output

    @activity.defn(name=steps.VALIDATE_INSIGHTS)
    async def validate_insights(self, task: ValidationTask) -> GateVerdict:
        catalogue, names, output = await asyncio.to_thread(self._insights_inputs, task)

        async def ai() -> tuple[list[FailedCheck], TokenUsage]:
            ids = [str(n) for n in range(1, len(output.insights) + 1)] if task.ai_review_sample else []
            return await self._judge(task, "insight", ids, judge.insights_prompt(catalogue, output),
                                     judge.INSIGHTS_JUDGE_INSTRUCTIONS)

        return await self._gate(task, lambda: claims.check_insights(catalogue, output, names), ai, small=False)
