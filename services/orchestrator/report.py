"""The report: assembled from validated outputs only, written as JSON, Markdown and JSON lines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from temporalio import activity

from shared import steps
from shared.artifacts import ArtifactStore
from shared.contracts import (
    MAX_LISTED,
    ArtifactRef,
    BatchRecord,
    BranchUsage,
    CatalogueFacts,
    CitedInsight,
    ContactChunkOutput,
    ContactEnrichment,
    Coverage,
    GateRecord,
    GateSummary,
    InsightsContext,
    InsightsOutput,
    LayerCount,
    OpportunityChunkOutput,
    OpportunityRisk,
    QuarantinedStep,
    Report,
    ReportRequest,
    ReviewedStep,
    RunResult,
    TokenUsage,
)
from shared.datasets import read_contacts, read_opportunities
from shared.figures import count, counted, fact_value, money, percent, share_pct
from shared.manifests import read_gates, write_gates

TABLE_ROWS = 50
L = TypeVar("L", ContactEnrichment, OpportunityRisk)


def summarize_gates(gates: Sequence[GateRecord]) -> GateSummary:
    rejections = [verdict for gate in gates for verdict in gate.rejections]
    return GateSummary(
        gated_steps=len(gates),
        attempts=sum(gate.attempts for gate in gates),
        rejections_by_layer=[
            LayerCount(layer="deterministic", rejections=sum(v.layer == "deterministic" for v in rejections)),
            LayerCount(layer="ai", rejections=sum(v.layer == "ai" for v in rejections)),
        ],
        steps_fixed_by_retry=sum(gate.outcome == "passed" and gate.attempts > 1 for gate in gates),
        rejected_steps=[gate for gate in gates if gate.rejections][:MAX_LISTED],
        rejected_steps_total=sum(bool(gate.rejections) for gate in gates),
    )


def _rows(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def render_markdown(report: Report, enrichments: Sequence[ContactEnrichment],
                    risks: Sequence[OpportunityRisk]) -> str:
    """The report for a person; ``enrichments`` and ``risks``: the first rows of each, for its tables."""
    c, o = report.facts.contacts, report.facts.opportunities
    s = report.summary
    out = [f"# CRM analysis report: {report.run_id}", "", "## Facts (computed over the full data)", ""]
    out += _rows(["figure", "value"], [
        ("contacts", count(c.total_contacts)), ("distinct companies", count(c.unique_companies)),
        ("top company by contacts", f"{c.top_company} ({counted(c.top_company_contacts, 'contact')})"),
        ("distinct titles", count(c.unique_titles)), ("contacts without a title", count(c.missing_titles)),
        ("duplicate names", count(c.duplicate_names)), ("opportunities", count(o.total_opportunities)),
        ("value of all opportunities", money(o.total_value)),
        ("open pipeline (not closed)", f"{money(o.open_pipeline_value)} in {counted(o.open_opportunities, 'deal')}"),
        ("won", f"{money(o.won_value)} in {counted(o.won_count, 'deal')}"),
        ("lost", f"{money(o.lost_value)} in {counted(o.lost_count, 'deal')}"),
        ("win rate, won / (won + lost)", f"{percent(o.win_rate_by_value_pct)} by value, "
         f"{percent(o.win_rate_by_count_pct)} by count"),
        ("average opportunity", money(o.average_deal_value)),
        ("opportunities with an unknown contact", count(o.orphan_opportunities)),
    ])
    out += ["", "Stages (grouped by their canonical name):", ""]
    out += _rows(["stage", "deals", "value", "written as"], [
        (x.stage, count(x.count), money(x.value), ", ".join(x.spellings)) for x in o.stage_breakdown])
    for warning in report.input_warnings:
        out += ["", f"Data quality: {warning}."]
    if o.stage_spelling_variants:
        out += ["", f"Data quality: {counted(o.stage_spelling_variants, 'stage')} "
                f"{'is' if o.stage_spelling_variants == 1 else 'are'} written in more than one way."]
    if report.quarantined_total:
        out += ["", "## Coverage: what this report leaves out", ""]
        out += [f"- {x.branch}: {count(x.covered)} of {count(x.rows)} rows covered ({percent(x.share_pct)}); every "
                "figure from model labels below counts the covered rows only" for x in report.coverage]
        out += [f"- **{q.step}** quarantined" + (f": {counted(q.rows, 'row')} ({', '.join(q.ids)}"
                                                 f"{', …' if q.rows > len(q.ids) else ''})" if q.rows else "")
                + f"; last rejection: {'; '.join(q.reasons) or 'n/a'}" for q in report.quarantined]
        if report.quarantined_total > len(report.quarantined):
            out += [f"- … and {counted(report.quarantined_total - len(report.quarantined), 'more quarantined step')}"]
    out += ["", "## Validated enrichments", ""]
    out += [f"- {counted(s.enriched_contacts, 'contact')} enriched; {counted(s.decision_makers, 'decision maker')}; "
            + ", ".join(f"{x.key}: {x.count}" for x in s.seniority)
            + (f"; {counted(s.relabelled_contacts, 'contact')} took their title's labels from another chunk "
               "(one title, one label)" if s.relabelled_contacts else "")]
    out += [f"- {counted(s.assessed_opportunities, 'opportunity', 'opportunities')} assessed; "
            + ", ".join(f"{x.key} risk: {x.count}" for x in s.risk_levels)
            + f"; high-risk value {money(s.high_risk_value)}", ""]
    out += _rows(["contact", "seniority", "department", "decision maker", "rationale", "flags"], [
        (e.id, e.seniority, e.department, "yes" if e.decision_maker else "no", e.rationale,
         ", ".join(e.quality_flags)) for e in enrichments[:TABLE_ROWS]
    ])
    out += [""]
    out += _rows(["opportunity", "risk", "reason", "next action"], [
        (r.id, r.risk, r.reason, r.next_action) for r in risks[:TABLE_ROWS]
    ])
    if s.enriched_contacts > TABLE_ROWS or s.assessed_opportunities > TABLE_ROWS:
        out += ["", f"(first {TABLE_ROWS} rows shown; all of them are in `{report.enrichments.key}`)"]
    out += ["", "## Insights", ""]
    if report.insights_missing:
        out += [f"No insights: {report.insights_missing}"]
    for number, cited in enumerate(report.insights, 1):
        out += [f"{number}. **{cited.insight.title}** {cited.insight.text}"]
        out += [f"   - `{fact.id}`: {fact.label} = {fact_value(fact)}" for fact in cited.facts]
    g = report.gates
    layers = ", ".join(f"{x.layer}: {x.rejections}" for x in g.rejections_by_layer)
    out += ["", "## Validation gates", "",
            f"{counted(g.gated_steps, 'gated step')}, {counted(g.attempts, 'attempt')}; rejections by layer: {layers}; "
            f"{counted(g.steps_fixed_by_retry, 'step')} fixed by a retry with the validator's reasons.", ""]
    if report.reused_steps:
        out += [f"{counted(report.reused_steps, 'step')} reused an output validated in an earlier run over the same "
                "data (no model call).", ""]
    for reviewed in report.reviewed:
        for r in reviewed.reviews:
            who = "nobody, in time" if r.timed_out else r.reviewer
            out += [f"- **{reviewed.step}**: {r.action} by {who} at {r.decided_at:%Y-%m-%d %H:%M} UTC"
                    + (f": {r.note}" if r.note else "") + f" (step {reviewed.outcome})"]
    if report.reviewed:
        out += [""]
    for gate in g.rejected_steps:
        outcome = f"accepted at attempt {gate.attempts}" if gate.passed and gate.outcome == "passed" else (
            {"approved": "approved by a reviewer", "corrected": "corrected by a reviewer",
             "quarantined": "quarantined", "reused": "reused"}.get(gate.outcome, "budget spent"))
        out += [f"- **{gate.step}**: {outcome}"]
        for verdict in gate.rejections:
            reasons = "; ".join(check.reason for check in verdict.failed_checks)
            out += [f"  - attempt {verdict.attempt} rejected by the {verdict.layer} layer "
                    f"({counted(verdict.failed_total, 'check')}): {reasons}"]
    u = report.usage
    out += ["", f"LLM: {counted(u.calls, 'call')}, {counted(u.input_tokens, 'input token')}, "
            f"{counted(u.output_tokens, 'output token')}, "
            f"${u.cost_usd:.4f}.", ""]
    out += _rows(["branch", "calls", "input tokens", "output tokens", "cost (USD)"], [
        (b.branch, b.usage.calls, b.usage.input_tokens, b.usage.output_tokens, f"{b.usage.cost_usd:.4f}")
        for b in report.usage_by_branch
    ])
    out += [""]
    return "\n".join(out)


def _no_insights(gate: GateRecord) -> str:
    last = "; ".join(c.reason for c in gate.rejections[-1].failed_checks[:3]) if gate.rejections else ""
    return (f"the insights step was quarantined after {gate.attempts} rejected attempts"
            + (f"; the last rejection said: {last}" if last else "")
            + ". The facts and validated enrichments above stand; no insight was validated.")


def _json_lines(items: Sequence[ContactEnrichment | OpportunityRisk]) -> bytes:
    return "".join(f"{item.model_dump_json()}\n" for item in items).encode()


class ReportActivities:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @activity.defn(name=steps.RECORD_BATCH)
    def record_batch(self, record: BatchRecord) -> ArtifactRef:
        """Keep one batch's gate records in the store, where aggregation and the report read them."""
        return write_gates(self.store, record)

    def _quarantined(self, gate: GateRecord) -> QuarantinedStep:
        """A left-out step: how many rows, which (the first of them), and why its last attempt was rejected."""
        ids: list[str] = []
        if gate.chunk is not None:
            reader = read_contacts if gate.step.startswith("contacts/") else read_opportunities
            ids = [r.id for r in reader(self.store, gate.chunk)]
        reasons = [c.reason for c in gate.rejections[-1].failed_checks[:5]] if gate.rejections else []
        return QuarantinedStep(step=gate.step, rows=len(ids), ids=ids[:MAX_LISTED], reasons=reasons)

    def _labels(self, ref: ArtifactRef, model: type[L]) -> tuple[bytes, list[L]]:
        """A branch's validated labels as JSON lines, and the first rows, for the report's table. Aggregation
        writes JSON lines (read here without parsing them all); runs aggregated before that wrote one document."""
        if not ref.key.endswith(".json"):
            data = self.store.read_bytes(ref)
            head = [model.model_validate_json(line) for line in data.split(b"\n", TABLE_ROWS)[:TABLE_ROWS] if line]
            return data, head
        items: list[Any] = (self.store.read_model(ref, ContactChunkOutput).enrichments if model is ContactEnrichment
                            else self.store.read_model(ref, OpportunityChunkOutput).risks)
        return _json_lines(items), items[:TABLE_ROWS]

    @activity.defn(name=steps.WRITE_REPORT)
    def write_report(self, request: ReportRequest) -> RunResult:
        """Gather the accepted outputs and write the report files; returns the report and where it is."""
        context = self.store.read_model(request.insights_context, InsightsContext)
        catalogue = {f.id: f for f in self.store.read_model(context.catalogue, CatalogueFacts).facts}
        insights = [] if request.insights_output is None else [
            CitedInsight(insight=insight, facts=[catalogue[i] for i in insight.facts if i in catalogue])
            for insight in self.store.read_model(request.insights_output, InsightsOutput).insights
        ]
        contact_gates = request.contact_gates or read_gates(self.store, request.run_id, "contacts",
                                                            request.contact_batches)
        opportunity_gates = request.opportunity_gates or read_gates(self.store, request.run_id, "opportunities",
                                                                    request.opportunity_batches)
        contact_lines, contact_head = self._labels(context.contact_labels, ContactEnrichment)
        if context.risks is not None:
            risk_lines, risk_head = self._labels(context.risks, OpportunityRisk)
        else:  # runs aggregated before the risks were gathered in one place
            risks = [r for g in opportunity_gates if g.accepted_output
                     for r in self.store.read_model(g.accepted_output, OpportunityChunkOutput).risks]
            risk_lines, risk_head = _json_lines(risks), risks[:TABLE_ROWS]
        base = f"runs/{request.run_id}/report"
        enrichments = self.store.write_bytes(f"{base}/enrichments.jsonl", contact_lines + risk_lines)
        gates = [*contact_gates, *opportunity_gates, request.insights_gate]
        by_branch = [
            BranchUsage(branch=name, usage=sum((g.usage for g in branch), TokenUsage()))
            for name, branch in (("contacts", contact_gates), ("opportunities", opportunity_gates),
                                 ("insights", [request.insights_gate]))
        ]
        quarantined = [self._quarantined(g) for g in gates if g.outcome == "quarantined"]
        left_out = {branch: sum(q.rows for q in quarantined if q.step.startswith(f"{branch}/"))
                    for branch in ("contacts", "opportunities")}
        coverage = [
            Coverage(branch=branch, rows=rows, covered=rows - left_out[branch],
                     share_pct=share_pct(rows - left_out[branch], rows))
            for branch, rows in (("contacts", request.facts.contacts.total_contacts),
                                 ("opportunities", request.facts.opportunities.total_opportunities))
        ]
        report = Report(
            run_id=request.run_id, facts=request.facts, summary=context.summary, insights=insights,
            gates=summarize_gates(gates), usage=sum((b.usage for b in by_branch), TokenUsage()),
            usage_by_branch=by_branch, enrichments=enrichments, coverage=coverage,
            quarantined=quarantined[:MAX_LISTED], quarantined_total=len(quarantined),
            reviewed=[ReviewedStep(step=g.step, outcome=g.outcome, reviews=g.reviews) for g in gates
                      if any(r.reviewer != "policy" for r in g.reviews)][:MAX_LISTED],
            reused_steps=sum(g.outcome == "reused" for g in gates),
            insights_missing=None if request.insights_output is not None else _no_insights(request.insights_gate),
            input_warnings=request.input_warnings,
        )
        json_ref = self.store.write_bytes(f"{base}/report.json", report.model_dump_json(indent=2).encode())
        md_ref = self.store.write_bytes(f"{base}/report.md",
                                        render_markdown(report, contact_head, risk_head).encode())
        return RunResult(report=report, report_json=json_ref, report_markdown=md_ref,
                         report_location=self.store.location(md_ref))
