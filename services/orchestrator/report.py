"""The report: assembled from validated outputs only, written as JSON, Markdown and JSON lines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from temporalio import activity

from shared import steps
from shared.artifacts import ArtifactStore
from shared.contracts import (
    MAX_LISTED,
    BranchUsage,
    ContactChunkOutput,
    GateRecord,
    GateSummary,
    InsightsContext,
    InsightsOutput,
    LayerCount,
    OpportunityChunkOutput,
    Report,
    ReportRequest,
    RunResult,
    TokenUsage,
)

TABLE_ROWS = 50


def summarize_gates(gates: Sequence[GateRecord]) -> GateSummary:
    rejections = [verdict for gate in gates for verdict in gate.rejections]
    return GateSummary(
        gated_steps=len(gates),
        attempts=sum(gate.attempts for gate in gates),
        rejections_by_layer=[
            LayerCount(layer="deterministic", rejections=sum(v.layer == "deterministic" for v in rejections)),
            LayerCount(layer="ai", rejections=sum(v.layer == "ai" for v in rejections)),
        ],
        steps_fixed_by_retry=sum(gate.passed and gate.attempts > 1 for gate in gates),
        rejected_steps=[gate for gate in gates if gate.rejections][:MAX_LISTED],
        rejected_steps_total=sum(bool(gate.rejections) for gate in gates),
    )


def _money(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _rows(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def render_markdown(report: Report, contacts: Sequence[ContactChunkOutput],
                    opportunities: Sequence[OpportunityChunkOutput]) -> str:
    c, o = report.facts.contacts, report.facts.opportunities
    s = report.summary
    out = [f"# CRM analysis report: {report.run_id}", "", "## Facts (computed over the full data)", ""]
    out += _rows(["figure", "value"], [
        ("contacts", c.total_contacts), ("unique companies", c.unique_companies),
        ("top company", f"{c.top_company} ({c.top_company_contacts} contacts)"),
        ("unique titles", c.unique_titles), ("missing titles", c.missing_titles),
        ("duplicate names", c.duplicate_names), ("opportunities", o.total_opportunities),
        ("pipeline value", _money(o.pipeline_value)), ("won value", _money(o.won_value)),
        ("win rate by value", f"{o.win_rate_by_value_pct}%"),
        ("opportunities with an unknown contact", o.orphan_opportunities),
    ])
    out += ["", "Stages:", ""]
    out += _rows(["stage", "count", "value"], [(x.stage, x.count, _money(x.value)) for x in o.stage_breakdown])
    out += ["", "## Validated enrichments", ""]
    out += [f"- {s.enriched_contacts} contacts enriched; {s.decision_makers} decision makers; "
            + ", ".join(f"{x.key}: {x.count}" for x in s.seniority)]
    out += [f"- {s.assessed_opportunities} opportunities assessed; "
            + ", ".join(f"{x.key} risk: {x.count}" for x in s.risk_levels)
            + f"; high-risk value {_money(s.high_risk_value)}", ""]
    enrichments = [e for chunk in contacts for e in chunk.enrichments]
    out += _rows(["contact", "seniority", "department", "decision maker", "rationale", "flags"], [
        (e.id, e.seniority, e.department, "yes" if e.decision_maker else "no", e.rationale,
         ", ".join(e.quality_flags)) for e in enrichments[:TABLE_ROWS]
    ])
    risks = [r for chunk in opportunities for r in chunk.risks]
    out += [""]
    out += _rows(["opportunity", "risk", "reason", "next action"], [
        (r.id, r.risk, r.reason, r.next_action) for r in risks[:TABLE_ROWS]
    ])
    if len(enrichments) > TABLE_ROWS or len(risks) > TABLE_ROWS:
        out += ["", f"(first {TABLE_ROWS} rows shown; all of them are in `{report.enrichments.key}`)"]
    out += ["", "## Insights", ""]
    for number, insight in enumerate(report.insights, 1):
        cites = ", ".join(f"{x.fact} = {x.value:g}" for x in insight.citations)
        out += [f"{number}. **{insight.title}** {insight.detail} _(cites {cites})_"]
    g = report.gates
    layers = ", ".join(f"{x.layer}: {x.rejections}" for x in g.rejections_by_layer)
    out += ["", "## Validation gates", "",
            f"{g.gated_steps} gated steps, {g.attempts} attempts; rejections by layer: {layers}; "
            f"{g.steps_fixed_by_retry} steps fixed by a retry with the validator's reasons.", ""]
    for gate in g.rejected_steps:
        outcome = f"accepted at attempt {gate.attempts}" if gate.passed else "budget spent"
        out += [f"- **{gate.step}**: {outcome}"]
        for verdict in gate.rejections:
            reasons = "; ".join(check.reason for check in verdict.failed_checks)
            out += [f"  - attempt {verdict.attempt} rejected by the {verdict.layer} layer "
                    f"({verdict.failed_total} checks): {reasons}"]
    u = report.usage
    out += ["", f"LLM: {u.calls} calls, {u.input_tokens} input tokens, {u.output_tokens} output tokens, "
            f"${u.cost_usd:.4f}.", ""]
    out += _rows(["branch", "calls", "input tokens", "output tokens", "cost (USD)"], [
        (b.branch, b.usage.calls, b.usage.input_tokens, b.usage.output_tokens, f"{b.usage.cost_usd:.4f}")
        for b in report.usage_by_branch
    ])
    out += [""]
    return "\n".join(out)


class ReportActivities:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @activity.defn(name=steps.WRITE_REPORT)
    def write_report(self, request: ReportRequest) -> RunResult:
        """Gather the accepted outputs and write the report files; returns the report and where it is."""
        context = self.store.read_model(request.insights_context, InsightsContext)
        insights = self.store.read_model(request.insights_output, InsightsOutput)
        contacts = [self.store.read_model(g.accepted_output, ContactChunkOutput)
                    for g in request.contact_gates if g.accepted_output]
        opportunities = [self.store.read_model(g.accepted_output, OpportunityChunkOutput)
                         for g in request.opportunity_gates if g.accepted_output]
        lines = [e.model_dump_json() for chunk in contacts for e in chunk.enrichments]
        lines += [r.model_dump_json() for chunk in opportunities for r in chunk.risks]
        base = f"runs/{request.run_id}/report"
        enrichments = self.store.write_bytes(f"{base}/enrichments.jsonl", ("\n".join(lines) + "\n").encode())
        gates = [*request.contact_gates, *request.opportunity_gates, request.insights_gate]
        by_branch = [
            BranchUsage(branch=name, usage=sum((g.usage for g in branch), TokenUsage()))
            for name, branch in (("contacts", request.contact_gates), ("opportunities", request.opportunity_gates),
                                 ("insights", [request.insights_gate]))
        ]
        report = Report(
            run_id=request.run_id, facts=request.facts, summary=context.summary, insights=insights.insights,
            gates=summarize_gates(gates), usage=sum((b.usage for b in by_branch), TokenUsage()),
            usage_by_branch=by_branch, enrichments=enrichments,
        )
        json_ref = self.store.write_bytes(f"{base}/report.json", report.model_dump_json(indent=2).encode())
        md_ref = self.store.write_bytes(f"{base}/report.md",
                                        render_markdown(report, contacts, opportunities).encode())
        return RunResult(report=report, report_json=json_ref, report_markdown=md_ref)
