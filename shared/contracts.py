"""Pydantic contracts for everything that crosses a process boundary.

Datasets never travel in workflow payloads: they live in the artifact store and the workflow passes
``ArtifactRef``s. Every list that can grow with the input is either bounded here or kept in the store.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# --- vocabularies --------------------------------------------------------------------------------------

Seniority = Literal["executive", "senior", "mid", "junior", "unknown"]
Department = Literal[
    "executive", "sales", "engineering", "product", "marketing", "finance", "operations", "hr", "support", "legal",
    "other", "unknown",
]
RiskLevel = Literal["low", "medium", "high"]
QualityFlag = Literal[
    "missing_title", "missing_company", "duplicate_name", "odd_capitalisation", "unknown_contact", "zero_amount"
]
Branch = Literal["contacts", "opportunities"]
GateLayer = Literal["deterministic", "ai"]
SpentPolicy = Literal["review", "quarantine", "fail"]
# How a gated step ended: passed its gate, reused a validated output of an earlier run, accepted by a reviewer
# as it was or as the reviewer corrected it, or left out of the run.
StepOutcome = Literal["passed", "reused", "approved", "corrected", "quarantined"]
ReviewAction = Literal["approve", "correct", "retry", "quarantine", "abort"]

ShortText = Annotated[str, Field(max_length=200)]
# Money is exact from parsing to report: decimal, at most two places (cents), never a binary float.
Money = Annotated[Decimal, Field(max_digits=20, decimal_places=2)]
Percent = Annotated[Decimal, Field(max_digits=6, decimal_places=1)]

MAX_FAILED_CHECKS = 40
MAX_LISTED = 25


class Contract(BaseModel):
    """Base of every contract. Tolerant readers: a field this code does not know is ignored and a field it added
    has a default, so a worker of the previous or next version reads what this one wrote (histories of running
    workflows included). The rule for changing a contract: add fields with defaults; never rename, retype or remove
    one that a running workflow may hold (tests/test_contracts.py holds every contract to it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class KeyValue(Contract):
    """One entry of a map; maps are lists of these so that a constrained model never omits them."""

    key: str
    value: str


# --- records ---------------------------------------------------------------------------------------------


class ContactRecord(Contract):
    id: str
    name: str
    company: str
    title: str
    created_date: date | None
    extra: list[KeyValue] = Field(default_factory=list, description="Columns beyond the standard ones, kept.")
    quality_flags: list[QualityFlag] = Field(default_factory=list, description="Computed at ingest, not by a model.")


class OpportunityRecord(Contract):
    id: str
    name: str
    stage: str
    amount: Money
    contact_id: str
    close_date: date | None
    extra: list[KeyValue] = Field(default_factory=list)
    quality_flags: list[QualityFlag] = Field(default_factory=list)


# --- artifacts, plans, facts ---------------------------------------------------------------------------------


class ArtifactRef(Contract):
    """A file in the artifact store, by key relative to the store's root; with its sha256 when it must not change
    (a step's output: the validator and every later reader check the bytes they read are the bytes validated)."""

    key: str
    sha256: str | None = None


class DatasetRef(Contract):
    """A normalized dataset: one file per chunk, so a chunk step reads only its own rows. Its size does not grow
    with the export: chunk keys follow from the prefix and the index."""

    branch: Branch
    source_name: str
    rows: int
    chunk_size: int
    chunk_count: int = 0
    chunk_prefix: str = ""
    listed: list[ArtifactRef] = Field(default_factory=list, validation_alias="chunks",
                                      description="Written by versions that listed every chunk; read, not written.")
    chunk_format: Literal["parquet", "jsonl"] = Field(default="parquet", description="The chunk files' format: JSON "
                                                      "lines from this version on; runs ingested before wrote Parquet.")

    def chunk(self, index: int) -> ArtifactRef:
        return self.listed[index] if self.listed else ArtifactRef(
            key=f"{self.chunk_prefix}/chunk-{index:05d}.{self.chunk_format}")

    @property
    def chunks(self) -> list[ArtifactRef]:
        return list(self.listed) if self.listed else [self.chunk(i) for i in range(self.chunk_count)]


class CountItem(Contract):
    key: str
    count: int


class StageItem(Contract):
    stage: str = Field(description="The canonical stage ('Closed Won'), or the stage as written if not a known one.")
    count: int
    value: Money
    spellings: list[str] = Field(default_factory=list, max_length=MAX_LISTED,
                                 description="How the export wrote it, when more than one way.")


class ContactFacts(Contract):
    """Companies are grouped by ``taxonomy.company_key`` and titles by ``taxonomy.title_key``."""

    total_contacts: int
    unique_companies: int
    top_company: str | None
    top_company_contacts: int
    company_distribution: list[CountItem] = Field(max_length=MAX_LISTED, description="Largest companies first.")
    unique_titles: int
    missing_titles: int
    duplicate_names: int


class OpportunityFacts(Contract):
    """Stages are grouped by ``taxonomy.stage_key``; a figure with nothing to compute from is null, never 0."""

    total_opportunities: int
    total_value: Money = Field(description="All opportunities, open and closed.")
    open_opportunities: int
    open_pipeline_value: Money = Field(description="Opportunities not yet closed (won or lost).")
    won_count: int
    won_value: Money
    lost_count: int
    lost_value: Money
    win_rate_by_value_pct: Percent | None = Field(description="Won value / (won + lost value); null if none closed.")
    win_rate_by_count_pct: Percent | None = Field(description="Won deals / (won + lost deals); null if none closed.")
    average_deal_value: Money | None
    stage_breakdown: list[StageItem]
    stage_spelling_variants: int = Field(default=0, description="Stages the export wrote in more than one way.")
    orphan_opportunities: int = Field(description="Opportunities whose contact_id matches no contact.")
    orphan_opportunity_ids: list[str] = Field(max_length=MAX_LISTED, description="The first of them, as a sample.")


class Facts(Contract):
    contacts: ContactFacts
    opportunities: OpportunityFacts


class IngestRequest(Contract):
    run_id: str
    contacts: ArtifactRef = Field(description="The uploaded contacts export, in the store.")
    contacts_name: str = Field(max_length=255, description="Its file name as the user gave it, for messages.")
    opportunities: ArtifactRef
    opportunities_name: str = Field(max_length=255)
    keep_extra_columns: bool = Field(default=False, description="Copy columns the analysis does not use into the "
                                     "store (off: personal data the analysis needs not is not kept).")
    contact_chunk_size: int
    opportunity_chunk_size: int
    decimal_separator: Literal[".", ","] = "."


class IngestResult(Contract):
    contacts: DatasetRef
    opportunities: DatasetRef
    facts: Facts
    warnings: list[str] = Field(default_factory=list, max_length=10, description="What ingest had to assume (an "
                                "export decoded as UTF-16 or Windows-1252), for the report.")


# --- step outputs ------------------------------------------------------------------------------------------


class ContactEnrichment(Contract):
    id: str
    seniority: Seniority
    department: Department
    decision_maker: bool
    rationale: Annotated[str, Field(min_length=1, max_length=120)]
    quality_flags: list[QualityFlag] = Field(default_factory=list, max_length=6)


class OpportunityRisk(Contract):
    id: str
    risk: RiskLevel
    reason: Annotated[str, Field(min_length=1, max_length=160)]
    next_action: Annotated[str, Field(max_length=120)]
    quality_flags: list[QualityFlag] = Field(default_factory=list, max_length=6)


FactUnit = Literal["count", "usd", "percent"]
EntityKind = Literal["run", "company", "stage", "department", "seniority", "risk", "deal"]
ClaimKind = Literal["total", "share", "ranking", "comparison"]


class Fact(Contract):
    """One figure computed in code, citable by an insight: a stable id, what it is about, its value and unit.
    A ranking is a fact too (``rank:companies_by_contacts:1``), so a superlative can be checked; a share names the
    two facts it is computed from, so it can be recomputed."""

    id: str
    label: str
    entity_kind: EntityKind = "run"
    entity: str | None = Field(default=None, description="The company, stage, deal … it is about, as displayed.")
    value: Decimal
    unit: FactUnit
    parts: list[str] = Field(default_factory=list, max_length=2, description="A share's numerator, denominator.")


class Insight(Contract):
    """A proof-carrying claim: the facts it rests on, what it is about, what kind of claim it makes, its text."""

    title: Annotated[str, Field(min_length=1, max_length=120)]
    text: Annotated[str, Field(min_length=1, max_length=400)]
    kind: ClaimKind
    facts: list[str] = Field(min_length=1, max_length=4, description="Ids of the facts it cites.")
    entity: str | None = Field(default=None, description="The company, stage or deal it is about, if one.")


class ContactChunkOutput(Contract):
    enrichments: list[ContactEnrichment]


class OpportunityChunkOutput(Contract):
    risks: list[OpportunityRisk]


class InsightsOutput(Contract):
    insights: list[Insight] = Field(min_length=3, max_length=7)


class TokenUsage(Contract):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# --- gates --------------------------------------------------------------------------------------------------


class FailedCheck(Contract):
    """One reason a gate rejected a step, written so that a model can act on it."""

    check: str
    reason: Annotated[str, Field(max_length=300)]
    record_id: str | None = None


class ChunkTask(Contract):
    """One gated analysis of one chunk, at one attempt."""

    run_id: str
    step: str
    branch: Branch
    chunk: ArtifactRef
    attempt: int
    feedback: list[FailedCheck] = Field(default_factory=list, max_length=MAX_FAILED_CHECKS)
    reuse: bool = Field(default=False, description="Look for a validated output of the same work first.")


class StepOutput(Contract):
    """What an analysis attempt produced: its output sits in the store; a schema error is kept for the gate."""

    step: str
    attempt: int
    output: ArtifactRef
    records: int
    schema_error: str | None = None
    usage: TokenUsage = TokenUsage()
    reuse_key: str | None = Field(default=None, description="What determines this output (content, prompt, rules, "
                                  "model); a validated output is found again under it.")
    reused_from: str | None = Field(default=None, description="Set when the output is a validated one of an earlier "
                                    "run (its run id): no model was called.")


class ValidationTask(Contract):
    run_id: str
    step: str
    attempt: int
    ai_review_sample: int
    output: StepOutput
    chunk: ArtifactRef | None = None
    insights_context: ArtifactRef | None = None


class GateVerdict(Contract):
    step: str
    attempt: int
    passed: bool
    layer: GateLayer
    failed_checks: list[FailedCheck] = Field(default_factory=list, max_length=MAX_FAILED_CHECKS)
    failed_total: int = 0
    usage: TokenUsage = TokenUsage()


class ReviewRecord(Contract):
    """A person's decision on a step whose gate budget was spent (or the timeout's, deciding for nobody)."""

    action: ReviewAction
    reviewer: Annotated[str, Field(min_length=1, max_length=100)]
    note: Annotated[str, Field(max_length=500)] = ""
    decided_at: datetime
    timed_out: bool = False


class GateRecord(Contract):
    """The history of one gated step, as the report shows it."""

    step: str
    attempts: int
    passed: bool
    accepted_output: ArtifactRef | None
    rejections: list[GateVerdict] = Field(default_factory=list)
    usage: TokenUsage = TokenUsage()
    outcome: StepOutcome = "passed"
    reviews: list[ReviewRecord] = Field(default_factory=list, max_length=20)
    chunk: ArtifactRef | None = Field(default=None, description="The chunk a quarantined step leaves out.")
    reused_from: str | None = None


class ReviewDecision(Contract):
    """What a reviewer sends to a waiting step (a Temporal update); checked before the workflow accepts it."""

    step: str
    action: ReviewAction
    reviewer: Annotated[str, Field(min_length=1, max_length=100)]
    note: Annotated[str, Field(max_length=500)] = ""
    correction: ArtifactRef | None = Field(default=None, description="correct: the corrected output, in the store, "
                                           "with its sha256.")
    records: int = 0


class PendingReview(Contract):
    """A step waiting for a person: where it waits, since when, what it produced last and why it was rejected."""

    run_id: str
    step: str
    workflow_id: str
    since: datetime
    attempts: int
    deadline: datetime
    last_output: StepOutput
    chunk: ArtifactRef | None = Field(default=None, description="The rows of a chunk step.")
    layer: GateLayer
    reasons: list[FailedCheck] = Field(default_factory=list, max_length=MAX_FAILED_CHECKS)
    failed_total: int = 0


class ReviewReceipt(Contract):
    step: str
    action: ReviewAction
    message: str


# --- aggregation, insights, report ---------------------------------------------------------------------------


class RiskyDeal(Contract):
    id: str
    name: str
    amount: Money
    stage: str
    reason: str


class EnrichmentSummary(Contract):
    enriched_contacts: int
    seniority: list[CountItem]
    departments: list[CountItem]
    decision_makers: int
    contacts_with_quality_flags: int
    assessed_opportunities: int
    risk_levels: list[CountItem]
    high_risk_value: Money
    riskiest_deals: list[RiskyDeal] = Field(max_length=10)
    unknown_ids_left_out: int = Field(default=0, description="Records of accepted outputs (a reviewer's approval) "
                                      "whose id is in neither export: left out of every figure.")
    relabelled_contacts: int = Field(default=0, description="Contacts whose title was labelled otherwise in "
                                     "another chunk and who took the labels most of that title's contacts got.")


class BatchRecord(Contract):
    """One batch's gate records, as the parent hands them to the store (bounded by the batch size)."""

    run_id: str
    branch: Branch
    number: int
    gates: list[GateRecord]


class AggregateRequest(Contract):
    run_id: str
    facts: Facts
    contacts: DatasetRef
    opportunities: DatasetRef
    contact_outputs: list[ArtifactRef] = Field(default_factory=list, description="Runs started before the gate "
                                               "manifests; new runs give the batch counts below.")
    opportunity_outputs: list[ArtifactRef] = Field(default_factory=list)
    contact_batches: int = Field(default=0, description="Batches of gate records in the store (gate_manifest_key).")
    opportunity_batches: int = 0
    records: list[BatchRecord] = Field(default_factory=list, max_length=2, description="Runs from the "
                                       "records-with-aggregation version on: the gate records of a branch gated in "
                                       "the run itself (one batch, at most chunks_per_batch records), which "
                                       "aggregation puts in the store first; counted in the batches above.")


class InsightsTask(Contract):
    run_id: str
    step: str
    attempt: int
    context: ArtifactRef
    feedback: list[FailedCheck] = Field(default_factory=list, max_length=MAX_FAILED_CHECKS)
    reuse: bool = False


class NamedEntity(Contract):
    """A name an insight's text may use for a company, a stage or a deal, and the entity it stands for (a deal
    is named by its id or its name, a stage by any spelling the export used)."""

    kind: EntityKind
    name: str
    refers_to: str


class InsightsContext(Contract):
    """What the insights agent reads and its gate checks against: the facts, the enrichment summary, the fact
    catalogue (every citable figure) and every entity a text could name."""

    facts: Facts
    summary: EnrichmentSummary
    catalogue: ArtifactRef = Field(description="The fact catalogue, as a FactCatalogue.")
    prompt_facts: list[str] = Field(max_length=120, description="Ids of the facts shown to the model.")
    contact_labels: ArtifactRef = Field(description="Every validated contact label, one title one label (a "
                                        "ContactChunkOutput).")
    risks: ArtifactRef | None = Field(default=None, description="Every accepted risk of a deal in the export (an "
                                      "OpportunityChunkOutput).")
    catalogue_digest: str | None = Field(default=None, description="A digest of the catalogue's content, whatever "
                                         "the order of its facts (the insights step's reuse key); runs aggregated "
                                         "before it compute it from the catalogue.")


class FactCatalogue(Contract):
    facts: list[Fact]
    entities: list[NamedEntity]


class CatalogueFacts(Contract):
    """A fact catalogue read for its facts alone: its entities (two a deal) are skipped, not built (at 50,000 deals,
    reading them took 0.3 s and held 100,000 objects)."""

    facts: list[Fact]


class StepPolicy(Contract):
    start_to_close: timedelta
    schedule_to_close: timedelta
    heartbeat: timedelta | None = None
    max_attempts: int = 5
    initial_retry: timedelta = timedelta(seconds=1)
    max_retry_interval: timedelta = timedelta(seconds=30)


class RunOptions(Contract):
    """Per-run configuration, fixed when the run starts so the workflow never reads the environment."""

    analyzer_queue: str
    validator_queue: str
    orchestrator_queue: str
    contact_chunk_size: int
    opportunity_chunk_size: int
    chunks_per_batch: int
    max_parallel_chunks: int
    gate_attempts: int
    ai_review_sample: int = Field(description="Records per chunk the AI validator reviews; 0 turns it off.")
    token_budget: int = Field(default=0, ge=0, description="Tokens (in + out) the run may spend; 0 is no limit.")
    decimal_separator: Literal[".", ","] = "."
    on_spent: SpentPolicy = Field(default="fail", description="What a step whose gate budget is spent does.")
    review_timeout: timedelta = Field(default=timedelta(hours=24), description="review: a step nobody decides on "
                                      "within this is quarantined.")
    reuse: bool = Field(default=False, description="Reuse validated outputs of earlier runs over the same work.")
    keep_extra_columns: bool = False
    sequential_branches: bool = Field(default=False, description="Run the contacts branch, then the opportunities "
                                      "branch (a benchmark's baseline; off, they run at once).")
    ingest: StepPolicy
    analysis: StepPolicy
    validation: StepPolicy


# A run id becomes part of store keys and workflow ids: no path separators, bounded.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class RunRequest(Contract):
    run_id: Annotated[str, Field(pattern=RUN_ID_PATTERN)]
    contacts: ArtifactRef = Field(description="The contacts export, uploaded to the store by the client.")
    contacts_name: str = Field(max_length=255)
    opportunities: ArtifactRef
    opportunities_name: str = Field(max_length=255)
    options: RunOptions


class BatchRequest(Contract):
    run_id: str
    branch: Branch
    chunks: list[ArtifactRef]
    first_index: int
    options: RunOptions
    token_allowance: int = Field(default=0, description="Tokens this batch may spend; 0 is no limit.")


class BatchResult(Contract):
    gates: list[GateRecord]


class GateManifest(Contract):
    gates: list[GateRecord]


def gate_manifest_key(run_id: str, branch: str, number: int) -> str:
    return f"runs/{run_id}/gates/{branch}/batch-{number:04d}.json"


class LayerCount(Contract):
    layer: GateLayer
    rejections: int


class GateSummary(Contract):
    gated_steps: int
    attempts: int
    rejections_by_layer: list[LayerCount]
    steps_fixed_by_retry: int
    rejected_steps: list[GateRecord] = Field(
        max_length=MAX_LISTED, description="The first of the steps that were rejected at least once."
    )
    rejected_steps_total: int = 0


class BranchUsage(Contract):
    branch: str
    usage: TokenUsage


class CitedInsight(Contract):
    """An insight as the report shows it: with the facts it cites."""

    insight: Insight
    facts: list[Fact]


class Coverage(Contract):
    """How many of a branch's rows the validated labels cover; figures from model labels count these rows only."""

    branch: Branch
    rows: int
    covered: int
    share_pct: Percent | None


class QuarantinedStep(Contract):
    step: str
    rows: int
    ids: list[str] = Field(default_factory=list, max_length=MAX_LISTED, description="The first of its rows' ids.")
    reasons: list[str] = Field(default_factory=list, max_length=5, description="Why its last attempt was rejected.")


class ReviewedStep(Contract):
    step: str
    outcome: StepOutcome
    reviews: list[ReviewRecord]


class Report(Contract):
    run_id: str
    facts: Facts
    summary: EnrichmentSummary
    insights: list[CitedInsight]
    gates: GateSummary
    usage: TokenUsage
    usage_by_branch: list[BranchUsage]
    enrichments: ArtifactRef = Field(description="Every validated enrichment and risk, as JSON lines.")
    coverage: list[Coverage] = Field(default_factory=list)
    quarantined: list[QuarantinedStep] = Field(default_factory=list, max_length=MAX_LISTED)
    quarantined_total: int = 0
    reviewed: list[ReviewedStep] = Field(default_factory=list, max_length=MAX_LISTED)
    reused_steps: int = 0
    insights_missing: str | None = Field(default=None, description="Why the report has no insights, if it has none.")
    input_warnings: list[str] = Field(default_factory=list, max_length=10, description="What ingest had to assume.")


class RunProgress(Contract):
    """The workflow's own view of a running run; chunk counts come from the progress events, which see every
    chunk as it passes its gate, where this workflow sees only finished batches."""

    stage: str


class RunResult(Contract):
    report: Report
    report_json: ArtifactRef
    report_markdown: ArtifactRef
    report_location: str = Field(default="", description="Where the Markdown report is, as the workers' store "
                                 "sees it: an absolute path, whatever folder the client runs in.")


class ReportRequest(Contract):
    run_id: str
    facts: Facts
    insights_context: ArtifactRef
    insights_output: ArtifactRef | None
    contact_gates: list[GateRecord] = Field(default_factory=list, description="Runs started before the gate "
                                            "manifests; new runs give the batch counts below.")
    opportunity_gates: list[GateRecord] = Field(default_factory=list)
    contact_batches: int = 0
    opportunity_batches: int = 0
    insights_gate: GateRecord
    input_warnings: list[str] = Field(default_factory=list, max_length=10)
