"""The AI layer of the gate: a model judges what rules cannot settle, on output that already passed the rules.

It sees a bounded sample of the records whose labels took judgement (a title the taxonomy settles completely is
the rules' business, not the judge's), drawn afresh for every attempt (``ai_review_sample`` records), and may flag
at most a few, each with a reason; the answer schema pins the ids to the sample's, so it cannot flag a record it
was not shown. It is not told that rules ran: a judge told that everything was checked already finds nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from temporalio.exceptions import ApplicationError

from shared import answer_schema
from shared.answer_schema import Schema
from shared.contracts import (
    CatalogueFacts,
    ContactEnrichment,
    ContactRecord,
    FactCatalogue,
    FailedCheck,
    InsightsOutput,
    OpportunityRecord,
    OpportunityRisk,
    TokenUsage,
)
from shared.llm import LlmCall, ModelEndpoint, ask_structured
from shared.settings import Settings

T = TypeVar("T")
MAX_PROBLEMS = 5


class Problem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class Judgement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    problems: list[Problem] = Field(max_length=MAX_PROBLEMS * 2)


def judgement_schema(ids: Sequence[str]) -> Schema:
    """The grammar of a judgement: at most a few problems, each about one of the records shown."""
    problem = answer_schema.obj("Problem", {
        "id": answer_schema.choice(ids, "id"),
        "reason": answer_schema.text("reason", max_length=100, min_length=1),
    })
    return answer_schema.response_format(
        answer_schema.list_answer("Judgement", "problems", problem, max_items=MAX_PROBLEMS))


def attempt_sample(items: Sequence[T], size: int, seed: str) -> list[T]:
    """At most ``size`` items drawn at random with ``seed`` (run, step and attempt), in their original order: a
    retried step is reviewed on other records than the first time, and a replay draws the same ones."""
    if size <= 0:
        return []
    if len(items) <= size:
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), size))
    return [items[i] for i in chosen]


def _compact(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str)


JUDGE_INSTRUCTIONS = """You review labels another model gave to CRM records. For each record, ask whether its labels
fit it: seniority and decision maker for the title's rank, department for the title's function, risk for the
deal's stage and amount, a rationale or reason that describes this record. Flag each label you doubt with a short
reason naming what is wrong. If every label fits, return an empty problems list. Reply with JSON only."""


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


INSIGHTS_JUDGE_INSTRUCTIONS = """You review findings another model wrote about a CRM export. Each insight lists the
facts it rests on, with their values. Flag an insight whose text claims more than its facts show: a cause or trend
that no fact measures, a comparison its facts do not make, advice presented as a finding. If every insight says only
what its facts show, return an empty problems list. Reply with JSON only."""


def insights_prompt(catalogue: FactCatalogue | CatalogueFacts, output: InsightsOutput) -> str:
    facts = {fact.id: fact for fact in catalogue.facts}
    lines = [
        _compact({"id": str(n), "title": i.title, "text": i.text,
                  "facts": {f: f"{facts[f].label} = {facts[f].value}" for f in i.facts if f in facts}})
        for n, i in enumerate(output.insights, 1)
    ]
    return "INSIGHTS:\n" + "\n".join(lines)


def to_failed_checks(kind: str, judgement: Judgement) -> list[FailedCheck]:
    return [
        FailedCheck(check="ai_review", record_id=p.id, reason=f"{kind} {p.id}: {p.reason}")
        for p in judgement.problems[:MAX_PROBLEMS]
    ]


async def ask_judge(endpoint: ModelEndpoint, settings: Settings, call: LlmCall, kind: str, ids: list[str],
                    prompt: str, instructions: str = JUDGE_INSTRUCTIONS) -> tuple[list[FailedCheck], TokenUsage]:
    """One AI review: the problems the judge finds among ``ids``. An answer that cannot be read is an
    infrastructure failure (raised, so Temporal retries it), never a rejection and never a pass."""
    if not ids:
        return [], TokenUsage()
    answer = await ask_structured(
        endpoint, settings, call, instructions=instructions, prompt=prompt, request_schema=judgement_schema(ids),
        answer_type=Judgement, max_tokens=60 * MAX_PROBLEMS + 32,
    )
    if answer.value is None:
        raise ApplicationError(f"the AI validator's answer for {call.step} was unreadable: {answer.schema_error}",
                               type="JudgeUnreadable")
    known = set(ids)
    return to_failed_checks(kind, Judgement(problems=[p for p in answer.value.problems if p.id in known])), \
        answer.usage
