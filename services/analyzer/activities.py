"""The analyzer's activities: ingest, one gated analysis per chunk, aggregation and insights."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import polars as pl
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.analyzer import agents
from services.analyzer.catalogue import build_catalogue, catalogue_digest
from services.analyzer.ingest import BadInputError, ingest
from shared import reuse, steps
from shared.answer_schema import Schema
from shared.artifacts import ArtifactStore
from shared.contracts import (
    AggregateRequest,
    ArtifactRef,
    CatalogueFacts,
    ChunkTask,
    ContactChunkOutput,
    ContactRecord,
    CountItem,
    EnrichmentSummary,
    Fact,
    FactCatalogue,
    FailedCheck,
    IngestRequest,
    IngestResult,
    InsightsContext,
    InsightsOutput,
    InsightsTask,
    OpportunityChunkOutput,
    OpportunityRecord,
    RiskyDeal,
    StepOutput,
    TokenUsage,
)
from shared.datasets import contacts_with_content, opportunities_with_content, scan_chunks
from shared.llm import LlmCall, ModelEndpoint, ask_structured
from shared.manifests import accepted_outputs, read_gates, write_gates
from shared.settings import Settings
from shared.taxonomy import title_rule
from shared.temporal import heartbeat_every


def _counts(frame: pl.DataFrame, column: str) -> list[CountItem]:
    if frame.is_empty():
        return []
    grouped = frame.group_by(column).len().sort(["len", column], descending=[True, False])
    return [CountItem(key=str(row[column]), count=row["len"]) for row in grouped.to_dicts()]


K = TypeVar("K", bound=Hashable)
L = TypeVar("L", agents.ContactLabel, agents.OpportunityLabel)


def spread_answers(asked: dict[K, Any], labels: Sequence[L]) -> tuple[dict[K, L], list[L]]:
    """Each answer to the group whose representative it names (asked: group -> representative record). Answers
    for ids the model invented or repeated are returned apart: they stay in the output, where the gate sees them."""
    group_of = {record.id: group for group, record in asked.items()}
    answers: dict[K, L] = {}
    strays: list[L] = []
    for label in labels:
        group = group_of.get(label.id)
        if group is None or group in answers:
            strays.append(label)
        else:
            answers[group] = label
    return answers, strays


R = TypeVar("R")
Rec = TypeVar("Rec", ContactRecord, OpportunityRecord)
A = TypeVar("A", agents.ContactLabels, agents.OpportunityLabels)


def per_call(asked: list[R], size: int) -> list[list[R]]:
    """The records asked of the model, in calls of at most ``size``."""
    return [asked[start:start + size] for start in range(0, len(asked), size)]


def feedback_for(feedback: Sequence[FailedCheck], ids: set[str], standing_for: dict[str, str]) -> list[FailedCheck]:
    """The validator's reasons a call of several answers: those about records it asks (or that its records stand
    for), and those about no record in particular."""
    return [f for f in feedback if f.record_id is None or standing_for.get(f.record_id, f.record_id) in ids]


LABEL_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String, "seniority": pl.String, "department": pl.String, "decision_maker": pl.Boolean,
    "rationale": pl.String, "quality_flags": pl.List(pl.String)}
RISK_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String, "risk": pl.String, "reason": pl.String, "next_action": pl.String,
    "quality_flags": pl.List(pl.String)}
CHOSEN = ("seniority", "department", "decision_maker")


OUTPUTS_A_PARSE = 32


def read_outputs(store: ArtifactStore, refs: Sequence[ArtifactRef], field: str,
                 schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """Validated chunk outputs as one frame, in chunk order, with each row's place (``row``): columns rather than
    a model object per record, which for a large export's labels would take several times the memory."""
    # outputs parsed by polars OUTPUTS_A_PARSE at a time, as one JSON array (a frame an output took 2.5 times as
    # long; every output in one array held all their bytes at once, 25 MB at 100,000 contacts)
    frames = []
    for start in range(0, max(len(refs), 1), OUTPUTS_A_PARSE):
        documents = b"[" + b",".join(store.read_bytes(ref) for ref in refs[start:start + OUTPUTS_A_PARSE]) + b"]"
        outputs = pl.read_json(io.BytesIO(documents), schema={field: pl.List(pl.Struct(schema))})
        # an empty output explodes to a null
        frames.append(outputs.explode(field).filter(pl.col(field).is_not_null()).unnest(field))
    return pl.concat(frames, how="vertical").with_row_index("row")


def one_label_per_title(labels: pl.DataFrame, titles: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """One title, one set of labels, across the whole run. Each chunk's gate held its labels to the title's rules
    and to one label per title within the chunk; chunks labelled apart may still differ where a title leaves room
    for judgement. Each title then takes the labels most of its contacts got (a tie: the ones seen first), every
    one of them a label a gate accepted for that title. ``labels``: rows in chunk order with their ``row``;
    ``titles``: id, title. Returns the labels and how many contacts changed."""
    keys = {title: title_rule(title).key for title in titles.get_column("title").unique().to_list()}
    keyed = labels.join(titles.select("id", pl.col("title").replace_strict(keys, default="", return_dtype=pl.String)
                                      .alias("key")), on="id", how="left").with_columns(pl.col("key").fill_null(
        title_rule("").key))
    chosen = (keyed.group_by("key", *CHOSEN).agg(pl.len().alias("votes"), pl.col("row").min().alias("first"))
              .sort(["votes", "first"], descending=[True, False]).unique("key", keep="first", maintain_order=True)
              .select("key", *(pl.col(c).alias(f"{c}_chosen") for c in CHOSEN)))
    joined = keyed.join(chosen, on="key", how="left").sort("row")
    differs = pl.any_horizontal(*(pl.col(c) != pl.col(f"{c}_chosen") for c in CHOSEN))
    changed = joined.filter(differs).height
    return joined.with_columns(pl.col(f"{c}_chosen").alias(c) for c in CHOSEN).select(labels.columns), changed


class AnalyzerActivities:
    """Activities bound to one store, one settings object and one model endpoint per worker process."""

    def __init__(self, store: ArtifactStore, settings: Settings, endpoint: ModelEndpoint) -> None:
        self.store = store
        self.settings = settings
        self.endpoint = endpoint

    @activity.defn(name=steps.INGEST)
    def ingest_exports(self, request: IngestRequest) -> IngestResult:
        """Parse and chunk both exports (sync: it is CPU and file work, run on the worker's thread pool)."""
        try:
            return ingest(self.store, request, heartbeat_every())
        except BadInputError as error:
            raise ApplicationError(str(error), type="BadInput", non_retryable=True) from None

    @activity.defn(name=steps.ENRICH_CONTACTS)
    async def enrich_contact_chunk(self, task: ChunkTask) -> StepOutput:
        """Label a chunk of contacts: what a title settles completely is labelled in code; every other title is
        asked of the model once per chunk (its first contact stands for it) and its answer given to every
        contact with that title, so one title gets one set of labels."""
        records, content = await self.store.small(contacts_with_content, self.store, task.chunk)
        key = self._reuse_key("contacts", content)
        if (found := await self._reused(task, key)) is not None:
            return found
        rules = {r.id: title_rule(r.title) for r in records}
        asked: dict[str, ContactRecord] = {}
        for record in records:
            if not rules[record.id].settled:
                asked.setdefault(rules[record.id].key, record)
        by_key: dict[str, agents.ContactLabel] = {}
        strays: list[agents.ContactLabel] = []
        error: str | None = None
        usage = TokenUsage()
        if asked:
            standing_for = {r.id: asked[rules[r.id].key].id for r in records if rules[r.id].key in asked}
            labels, error, usage = await self._ask_per_call(
                task, "contact-enricher", agents.CONTACT_INSTRUCTIONS, list(asked.values()), standing_for,
                agents.contact_prompt, agents.contact_request_schema, agents.ContactLabels, lambda a: a.contacts, 64)
            by_key, strays = spread_answers(asked, labels)
        # every contact's labels as a dict, validated in one call (a model a contact took half as long again); a
        # settled title's labels are the title's alone, written once a title as the answers are
        enrichments: list[dict[str, Any]] = []
        answers = {key: label.model_dump() for key, label in by_key.items()}  # once a title, not once a contact
        for record in records:
            rule = rules[record.id]
            if rule.settled and rule.key not in answers:
                answers[rule.key] = agents.settled_label(record, rule).model_dump()
            if (answered := answers.get(rule.key)) is not None:
                enrichments.append({**answered, "id": record.id, "quality_flags": record.quality_flags})
        enrichments += [label.model_dump() for label in strays]
        output = ContactChunkOutput.model_validate({"enrichments": enrichments})
        return await self._save(task, output, len(output.enrichments), error, usage, key)

    @activity.defn(name=steps.ASSESS_OPPORTUNITIES)
    async def assess_opportunity_chunk(self, task: ChunkTask) -> StepOutput:
        """Assess a chunk of deals. A deal's risk depends on its profile (stage and amount band): a closed deal or
        a profile the policy settles is assessed in code; every other profile is asked of the model once per chunk
        (its first deal stands for it) and the answer given to every deal of that profile."""
        records, content = await self.store.small(opportunities_with_content, self.store, task.chunk)
        key = self._reuse_key("opportunities", content)
        if (found := await self._reused(task, key)) is not None:
            return found
        profiles = {r.id: agents.deal_profile(r) for r in records}
        # a settled assessment depends on the stage as written and the amount band alone (agents.settled_kind):
        # made once for each, as the dict the output is validated from (a model a deal was a tenth of the step)
        kinds: dict[tuple[str, str], dict[str, Any] | None] = {}
        settled: dict[str, dict[str, Any] | None] = {}
        for record in records:
            kind = agents.settled_kind(record)
            if kind not in kinds:
                assessed = agents.settled_assessment(record)
                kinds[kind] = assessed.model_dump() if assessed is not None else None
            settled[record.id] = kinds[kind]
        standing: dict[tuple[str, str], OpportunityRecord] = {}
        for record in records:
            if (profile := profiles[record.id]) is not None and settled[record.id] is None:
                standing.setdefault(profile, record)
        by_profile: dict[tuple[str, str], agents.OpportunityLabel] = {}
        strays: list[agents.OpportunityLabel] = []
        error: str | None = None
        usage = TokenUsage()
        if standing:
            stands_for = {r.id: standing[p].id for r in records if (p := profiles[r.id]) in standing}
            risks_said, error, usage = await self._ask_per_call(
                task, "opportunity-risk", agents.OPPORTUNITY_INSTRUCTIONS, list(standing.values()), stands_for,
                agents.opportunity_prompt, agents.opportunity_request_schema, agents.OpportunityLabels,
                lambda a: a.opportunities, 48)
            by_profile, strays = spread_answers(standing, risks_said)
        risks: list[dict[str, Any]] = []  # validated in one call, as the contacts' labels
        answers = {profile: label.model_dump() for profile, label in by_profile.items()}
        for record in records:
            written = settled[record.id]
            if written is None:
                written = answers.get(profiles[record.id] or ("", ""))
            if written is not None:
                risks.append({**written, "id": record.id, "quality_flags": record.quality_flags})
        risks += [label.model_dump() for label in strays]
        output = OpportunityChunkOutput.model_validate({"risks": risks})
        return await self._save(task, output, len(output.risks), error, usage, key)

    @activity.defn(name=steps.AGGREGATE)
    def aggregate_enrichments(self, request: AggregateRequest) -> ArtifactRef:
        """Sum the validated chunk outputs, build the fact catalogue over them and the full data, and write the
        insights agent's context; returns its reference. The gate records of a branch gated in the run itself
        come with the request: they go to the store first, where the report reads them too."""
        for record in request.records:
            write_gates(self.store, record)
        people = scan_chunks(self.store, request.contacts.chunks, "contacts").select("id", "company", "title").collect()
        deals = scan_chunks(self.store, request.opportunities.chunks, "opportunities").select(
            "id", "name", "amount", "stage", "contact_id"
        ).collect()
        # a gate never passes a record for an id the chunk lacks; a reviewer's approval can: it counts nowhere
        contact_outputs = request.contact_outputs or accepted_outputs(
            read_gates(self.store, request.run_id, "contacts", request.contact_batches))
        opportunity_outputs = request.opportunity_outputs or accepted_outputs(
            read_gates(self.store, request.run_id, "opportunities", request.opportunity_batches))
        read = read_outputs(self.store, contact_outputs, "enrichments", LABEL_SCHEMA)
        known = read.filter(pl.col("id").is_in(people.get_column("id").implode()))
        unknown = read.height - known.height
        del read  # each frame of labels is let go once the next is made: at 100,000 contacts a copy is 25 MB
        enriched, relabelled = one_label_per_title(known, people.select("id", pl.col("title").fill_null("")))
        del known
        enriched = enriched.drop("row")
        all_risks = read_outputs(self.store, opportunity_outputs, "risks", RISK_SCHEMA)
        assessed = all_risks.filter(pl.col("id").is_in(deals.get_column("id").implode())).drop("row")
        unknown += all_risks.height - assessed.height
        del all_risks
        # JSON lines, as ContactEnrichment and OpportunityRisk write them: the report copies them as they are and
        # reads only the rows its table shows
        labels_ref = self.store.write_bytes(f"runs/{request.run_id}/contact-labels.jsonl",
                                            enriched.write_ndjson().encode())
        risks_ref = self.store.write_bytes(f"runs/{request.run_id}/risks.jsonl", assessed.write_ndjson().encode())
        high = assessed.filter(pl.col("risk") == "high").join(deals, on="id").sort("amount", descending=True)
        summary = EnrichmentSummary(
            enriched_contacts=enriched.height,
            seniority=_counts(enriched, "seniority"),
            departments=_counts(enriched, "department"),
            decision_makers=int(enriched.get_column("decision_maker").sum()),
            contacts_with_quality_flags=enriched.filter(pl.col("quality_flags").list.len() > 0).height,
            assessed_opportunities=assessed.height,
            risk_levels=_counts(assessed, "risk"),
            high_risk_value=Decimal(str(high.get_column("amount").sum() or 0)).quantize(Decimal("0.01")),
            riskiest_deals=[RiskyDeal(**row) for row in high.head(10).select(
                "id", "name", "amount", "stage", "reason").to_dicts()],
            relabelled_contacts=relabelled,
            unknown_ids_left_out=unknown,
        )
        # the catalogue reads only the labels themselves: their rationale and reasons are let go before it is built
        enriched = enriched.select("id", "seniority", "department", "decision_maker")
        assessed = assessed.select("id", "risk")
        catalogue, shown = build_catalogue(request.facts, people, deals, enriched, assessed)
        del people, deals, enriched, assessed
        catalogue_ref = self.store.write_bytes(f"runs/{request.run_id}/fact-catalogue.json", catalogue.to_json())
        context = InsightsContext(facts=request.facts, summary=summary, catalogue=catalogue_ref, prompt_facts=shown,
                                  contact_labels=labels_ref, risks=risks_ref,
                                  catalogue_digest=catalogue_digest(catalogue))
        return self.store.write_model(f"runs/{request.run_id}/insights-context.json", context)

    def _insights_inputs(self, task: InsightsTask) -> tuple[list[Fact], str]:
        """The facts shown to the model and the step's reuse key: the catalogue's digest and the facts shown. The
        digest comes with the context, which spares reading the catalogue's entities (two a deal) here; a context
        aggregated before it carries none, and its catalogue is read whole and digested the same way."""
        context = self.store.read_model(task.context, InsightsContext)
        if context.catalogue_digest is not None:
            facts, digest = self.store.read_model(context.catalogue, CatalogueFacts).facts, context.catalogue_digest
        else:
            catalogue = self.store.read_model(context.catalogue, FactCatalogue)
            facts, digest = catalogue.facts, catalogue_digest(catalogue)
        shown = set(context.prompt_facts)
        content = "\n".join([digest, *sorted(context.prompt_facts)])
        return [f for f in facts if f.id in shown], self._reuse_key("insights", content.encode())

    @activity.defn(name=steps.WRITE_INSIGHTS)
    async def write_insights(self, task: InsightsTask) -> StepOutput:
        facts, key = await asyncio.to_thread(self._insights_inputs, task)
        if (found := await self._reused(task, key)) is not None:
            return found
        answer = await ask_structured(
            self.endpoint, self.settings, LlmCall(task.run_id, task.step, task.attempt, "insights"),
            instructions=agents.INSIGHTS_INSTRUCTIONS,
            prompt=agents.insights_prompt(facts, task.feedback),
            request_schema=agents.insights_request_schema([f.id for f in facts]),
            answer_type=agents.InsightAnswers,
            max_tokens=640,
        )
        parsed, error = answer.value, answer.schema_error
        output = (
            InsightsOutput.model_construct(insights=[]) if parsed is None
            else InsightsOutput.model_validate(parsed.model_dump())
        )
        return await self._save(task, output, len(output.insights), error, answer.usage, key)

    async def _ask_per_call(
        self, task: ChunkTask, agent: str, instructions: str, asked: list[Rec], standing_for: dict[str, str],
        prompt: Callable[[list[Rec], list[FailedCheck], dict[str, str]], str],
        schema: Callable[[Sequence[str]], Schema], answer_type: type[A], answers: Callable[[A], list[L]],
        tokens_each: int,
    ) -> tuple[list[L], str | None, TokenUsage]:
        """Ask the model about ``asked``, at most ``labels_per_call`` records a call: a chunk of many distinct titles
        is several bounded calls, none of which outgrows the model's timeout (the embedded model writes about ten
        tokens a second). Each call reads only the reasons about its own records. Returns the answers, the first
        schema error and the calls' usage."""
        said: list[L] = []
        error: str | None = None
        usage = TokenUsage()
        for group in per_call(asked, self.settings.labels_per_call):
            ids = {r.id for r in group}
            answer = await ask_structured(
                self.endpoint, self.settings, LlmCall(task.run_id, task.step, task.attempt, agent),
                instructions=instructions, prompt=prompt(group, feedback_for(task.feedback, ids, standing_for),
                                                         standing_for),
                request_schema=schema([r.id for r in group]), answer_type=answer_type,
                max_tokens=tokens_each * len(group) + 64,
            )
            error, usage = error or answer.schema_error, usage + answer.usage
            said += answers(answer.value) if answer.value else []
        return said, error, usage

    def _reuse_key(self, kind: str, content: bytes) -> str:
        return reuse.reuse_key(kind, content, f"{self.endpoint.provider}:{self.endpoint.model_id}",
                               self.settings.llm_seed)

    async def _reused(self, task: ChunkTask | InsightsTask, key: str) -> StepOutput | None:
        """A validated output of the same work from an earlier run, when the run allows reuse (first attempt only:
        a retry with feedback is new work)."""
        if not task.reuse or task.attempt != 1:
            return None
        entry = await asyncio.to_thread(reuse.find, self.store, key)
        if entry is None:
            return None
        activity.logger.info("step %s reuses the output validated in run %s (%s)", task.step, entry.run_id,
                             entry.step)
        return StepOutput(step=task.step, attempt=task.attempt, output=entry.output, records=entry.records,
                          reuse_key=key, reused_from=entry.run_id)

    async def _save(
        self, task: ChunkTask | InsightsTask, output: ContactChunkOutput | OpportunityChunkOutput | InsightsOutput,
        records: int, schema_error: str | None, usage: TokenUsage, reuse_key: str,
    ) -> StepOutput:
        """Write this execution's output once, under a key of its own, and reference it with its sha256."""
        key = steps.output_key(task.run_id, task.step, task.attempt, activity.info().attempt)
        ref = await self.store.small(self.store.write_model, key, output, True)
        return StepOutput(step=task.step, attempt=task.attempt, output=ref, records=records,
                          schema_error=schema_error, usage=usage, reuse_key=reuse_key)
