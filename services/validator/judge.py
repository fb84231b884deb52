"""The AI layer of the gate: a model judges what rules cannot, on output that already passed the rules.

It sees a bounded, evenly spread sample of a chunk (``ai_review_sample`` records) and may flag at most a few
of them, each with a reason; the answer schema pins the ids to the sample's, so it cannot flag a record
it was not shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.contracts import (
    ContactEnrichment,
    ContactRecord,
    FailedCheck,
    InsightsContext,
    InsightsOutput,
    OpportunityRecord,
    OpportunityRisk,
)

T = TypeVar("T")
MAX_PROBLEMS = 5


class Problem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class Judgement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    problems: list[Problem] = Field(max_length=MAX_PROBLEMS * 2)


def _enum(values: Sequence[str]) -> Any:
    return Literal[tuple(values)]


def judgement_schema(ids: Sequence[str]) -> type[BaseModel]:
    problem = create_model(
        "Problem",
        id=(_enum(ids), ...),
        reason=(Annotated[str, Field(min_length=1, max_length=100)], ...),
    )
    return create_model(
        "Judgement",
        problems=(Annotated[list[problem], Field(max_length=MAX_PROBLEMS)], ...),
    )


def spread_sample(items: Sequence[T], size: int) -> list[T]:
    """At most ``size`` items, evenly spread over the sequence, always the same for the same input."""
    if size <= 0:
        return []
    if len(items) <= size:
        return list(items)
    step = len(items) / size
    return [items[int(i * step)] for i in range(size)]


def _compact(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str)


JUDGE_INSTRUCTIONS = """You review labels another model gave to CRM records. Rules already checked ids, enums and
obvious title contradictions. Flag only clear semantic mistakes: a label that does not fit its record, a rationale
that describes something else, a hallucinated detail. If every label is plausible, return an empty problems list.
Reply with JSON only."""


def contacts_prompt(records: Sequence[ContactRecord], labels: Sequence[ContactEnrichment]) -> str:
    by_id = {r.id: r for r in records}
    lines = [
        _compact({"id": e.id, "title": by_id[e.id].title, "seniority": e.seniority, "department": e.department,
                  "decision_maker": e.decision_maker, "rationale": e.rationale})
        for e in labels
        if e.id in by_id
    ]
    return "LABELLED CONTACTS:\n" + "\n".join(lines)


def opportunities_prompt(records: Sequence[OpportunityRecord], labels: Sequence[OpportunityRisk]) -> str:
    by_id = {r.id: r for r in records}
    lines = [
        _compact({"id": r.id, "stage": by_id[r.id].stage, "amount": by_id[r.id].amount, "risk": r.risk,
                  "reason": r.reason, "next_action": r.next_action})
        for r in labels
        if r.id in by_id
    ]
    return "ASSESSED OPPORTUNITIES:\n" + "\n".join(lines)


INSIGHTS_JUDGE_INSTRUCTIONS = """You review findings another model wrote about a CRM export, against the only
figures that exist (FIGURES, TOP COMPANIES). Rules already checked that every cited figure is right. Flag an insight
that claims what the figures do not show: a company "has the most" of something no figure counts per company, a
trend or cause the figures cannot support, or a detail that contradicts them. If every insight is supported, return
an empty problems list. Reply with JSON only."""


def insights_prompt(context: InsightsContext, output: InsightsOutput) -> str:
    figures = _compact({f.fact: f.value for f in context.figures})
    companies = ", ".join(f"{c.key} ({c.count} contacts)" for c in context.facts.contacts.company_distribution[:10])
    lines = [
        _compact({"id": str(n), "title": i.title, "detail": i.detail}) for n, i in enumerate(output.insights, 1)
    ]
    return f"FIGURES: {figures}\nTOP COMPANIES: {companies}\nINSIGHTS:\n" + "\n".join(lines)


def to_failed_checks(kind: str, judgement: Judgement) -> list[FailedCheck]:
    return [
        FailedCheck(check="ai_review", record_id=p.id, reason=f"{kind} {p.id}: {p.reason}")
        for p in judgement.problems[:MAX_PROBLEMS]
    ]
