"""The analyzer's agents: prompts and per-chunk answer schemas.

The schema sent to the model is built per chunk: the id field is an enum of the chunk's ids and the list has
exactly one item per record, so a grammar-constrained model cannot skip or invent an id. The answer is read
back with a lenient schema, so that whatever a provider without grammar support returns reaches the gate,
which names the problem for the retry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field

from shared import answer_schema
from shared.answer_schema import Schema
from shared.contracts import (
    ClaimKind,
    ContactEnrichment,
    ContactRecord,
    Department,
    Fact,
    FailedCheck,
    OpportunityRecord,
    RiskLevel,
    Seniority,
)
from shared.figures import fact_value
from shared.taxonomy import (
    FUNCTIONS,
    AmountBand,
    TitleRule,
    amount_band,
    describe,
    risk_allowed,
    stage_key,
    stage_name,
    title_rule,
)

RATIONALE_CHARS = 40


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContactLabel(_Answer):
    id: str
    seniority: Seniority
    department: Department
    decision_maker: bool
    rationale: Annotated[str, Field(min_length=1, max_length=120)]


class ContactLabels(_Answer):
    contacts: list[ContactLabel]


class OpportunityLabel(_Answer):
    id: str
    risk: RiskLevel
    reason: Annotated[str, Field(min_length=1, max_length=160)]
    next_action: Annotated[str, Field(max_length=120)]


class OpportunityLabels(_Answer):
    opportunities: list[OpportunityLabel]


class InsightAnswer(_Answer):
    title: Annotated[str, Field(min_length=1, max_length=120)]
    text: Annotated[str, Field(min_length=1, max_length=400)]
    kind: ClaimKind
    facts: list[str] = Field(min_length=1, max_length=4)
    entity: str | None = None


class InsightAnswers(_Answer):
    insights: list[InsightAnswer] = Field(min_length=3, max_length=7)


SENIORITY_ASKED = [s for s in get_args(Seniority) if s != "unknown"]
DEPARTMENT_ASKED = [d for d in get_args(Department) if d != "unknown"]


def contact_request_schema(ids: Sequence[str]) -> Schema:
    """The grammar the model must follow for one call about contacts: one label per id given. Only titled contacts
    reach a model (a blank title is settled in code), so ``unknown`` is not in it."""
    label = answer_schema.obj("ContactLabel", {
        "id": answer_schema.choice(ids, "id"),
        "seniority": answer_schema.choice(SENIORITY_ASKED, "seniority"),
        "department": answer_schema.choice(DEPARTMENT_ASKED, "department"),
        "decision_maker": answer_schema.boolean("decision_maker"),
        "rationale": answer_schema.text("rationale", max_length=RATIONALE_CHARS, min_length=1),
    })
    answer = answer_schema.list_answer("ContactLabels", "contacts", label, max_items=len(ids), min_items=len(ids))
    return answer_schema.response_format(answer)


def settled_label(record: ContactRecord, rule: TitleRule) -> ContactEnrichment:
    """The labels of a title the taxonomy settles completely: written in code, asked of no model."""
    [seniority], [department], [decision_maker] = rule.seniority, rule.department, rule.decision_maker
    return ContactEnrichment(id=record.id, seniority=seniority, department=department,
                             decision_maker=decision_maker, rationale=f"settled by the title: {rule.because}"[:120],
                             quality_flags=record.quality_flags)


def opportunity_request_schema(ids: Sequence[str]) -> Schema:
    """The grammar for one call about deal profiles: one assessment per id given."""
    label = answer_schema.obj("OpportunityLabel", {
        "id": answer_schema.choice(ids, "id"),
        "risk": answer_schema.choice(get_args(RiskLevel), "risk"),
        "reason": answer_schema.text("reason", max_length=RATIONALE_CHARS, min_length=1),
        "next_action": answer_schema.text("next_action", max_length=60, min_length=0),
    })
    answer = answer_schema.list_answer("OpportunityLabels", "opportunities", label, max_items=len(ids),
                                       min_items=len(ids))
    return answer_schema.response_format(answer)


def insights_request_schema(fact_ids: Sequence[str]) -> Schema:
    """The grammar for the insights: three or four, each citing one to three of the facts shown."""
    insight = answer_schema.obj("Insight", {
        "title": answer_schema.text("title", max_length=60, min_length=1),
        "text": answer_schema.text("text", max_length=200, min_length=1),
        "kind": answer_schema.choice(get_args(ClaimKind), "kind"),
        "facts": answer_schema.array("facts", answer_schema.choice(fact_ids), max_items=3, min_items=1),
        "entity": answer_schema.optional_text("entity", max_length=60),
    })
    return answer_schema.response_format(
        answer_schema.list_answer("InsightAnswers", "insights", insight, max_items=4, min_items=3))


CLOSED_STAGES = {"closed won": ("deal won; nothing at risk", "none"),
                 "closed lost": ("deal lost; nothing left at risk", "post-mortem with the account owner")}


NEXT_STEP = {"prospecting": "qualify the need and the budget", "qualification": "confirm the buyer and the timeline",
             "proposal": "follow up on the proposal", "negotiation": "agree the final terms"}


def deal_profile(record: OpportunityRecord) -> tuple[str, str] | None:
    """What an open deal's risk depends on: its stage and amount band; None for a closed or unknown stage."""
    stage = stage_key(record.stage)
    return (stage, amount_band(record.amount)) if stage in NEXT_STEP else None


def settled_kind(record: OpportunityRecord) -> tuple[str, AmountBand]:
    """What ``settled_assessment`` reads of a deal besides its id: the stage as written and the amount band. Deals of
    one kind get the same assessment (tests/test_labels_per_call.py holds it)."""
    return record.stage, amount_band(record.amount)


def settled_assessment(record: OpportunityRecord) -> OpportunityLabel | None:
    """The assessment of a deal the policy settles, written in code: a closed deal has no open risk; an open deal
    whose stage and amount band allow one risk level only gets that one."""
    closed = CLOSED_STAGES.get(stage_key(record.stage))
    if closed is not None:
        reason, action = closed
        return OpportunityLabel(id=record.id, risk="low", reason=reason, next_action=action)
    profile = deal_profile(record)
    allowed = risk_allowed(record.stage, record.amount)
    if profile is None or len(allowed) != 1:
        return None
    [risk] = allowed
    return OpportunityLabel(id=record.id, risk=risk, reason=f"{stage_name(record.stage)}, {profile[1]} deal",
                            next_action=NEXT_STEP[profile[0]])


def _compact(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str)


def feedback_section(feedback: Sequence[FailedCheck]) -> str:
    """The validator's reasons, put where the retried step's model reads them."""
    if not feedback:
        return ""
    lines = [f"- {item.reason}" for item in feedback]
    return (
        "\n\nYOUR PREVIOUS ANSWER WAS REJECTED by the validation gate. Answer again from scratch with every "
        "problem below fixed; do not write about the problems themselves:\n"
        + "\n".join(lines)
    )


CONTACT_INSTRUCTIONS = """You label CRM contacts by their job title. Each contact lists what its title allows
("allowed"): choose every label within it.
- seniority: executive for C-level, founders and presidents; senior for VP, Head, Director and for Senior, Lead,
  Principal or Staff titles; mid for an experienced professional or a manager; junior for entry level (Junior,
  Intern, Assistant, Associate, Coordinator, Representative), unless the title says more.
- department: the function the title names (engineering, sales, marketing, finance, hr, operations, product,
  support, legal); executive only for a chief executive, founder or president; other when no function fits.
- decision_maker: true for executives and for VP, Head and Director titles (they sign); false for everyone else,
  managers included (they influence a purchase, their director decides).
- rationale: the title's own rank word and function, at most five words (for example "Manager; marketing").
Answer every id exactly once, only the ids given. Reply with JSON only."""

OPPORTUNITY_INSTRUCTIONS = """You assess the risk of open CRM opportunities. Each lists the risk levels its stage
and amount allow ("allowed_risk"): choose within it. Early stages with much at stake are riskier; a small deal in
negotiation is not.
For every opportunity give:
- risk: one of its allowed_risk.
- reason: a few words that name its stage (for example "Prospecting, large deal").
- next_action: a short step that moves the open deal forward (qualify, send a proposal, agree terms …).
Answer every id exactly once, only the ids given. Reply with JSON only."""

UNITS = {"count": "count", "usd": "money", "percent": "percentage"}

INSIGHTS_INSTRUCTIONS = """You write findings for a CRM report from FACTS computed in code (one per line:
id | what it is | value | unit). Write 3 or 4 insights, each about a different fact. Each insight:
- facts: the ids of the 1 to 3 facts it rests on.
- text: one or two sentences. Every number in it must be the value of a fact it cites, written as is or rounded
  (52,000 or $52k; 35.4% or 35%), in its unit: $ only for money, % only for a percentage, a count as a plain
  number. Name a company, stage or deal only if a fact it cites is about it.
- kind: "total" (states a figure), "share" (a percentage of a whole), "ranking" (the top or largest one: cite the
  rank: fact), "comparison" (two figures side by side: cite both).
- entity: the company, stage or deal it is about, exactly as its fact names it, or null.
Say "most", "largest", "top" or "leading" only with a rank: fact. Reply with JSON only."""


def _notes(feedback: Sequence[FailedCheck], note_for: dict[str, str] | None = None) -> dict[str, str]:
    """The validator's reasons per record, to sit beside the record they are about: a small model reads a
    correction next to its record far better than in a list at the end. ``note_for`` maps a record's id to the id
    of the record that stands for it in the prompt (a title or a deal profile is asked once per chunk)."""
    notes: dict[str, list[str]] = {}
    for item in feedback:
        if item.record_id is not None:
            target = (note_for or {}).get(item.record_id, item.record_id)
            notes.setdefault(target, []).append(item.reason)
    return {key: "; ".join(value) for key, value in notes.items()}


def _contact_line(record: ContactRecord, rule: TitleRule, note: str | None) -> str:
    allowed: dict[str, str] = {"seniority": rule.seniority_hint()}
    if rule.department != FUNCTIONS:
        allowed["department"] = describe(rule.department)
    allowed["decision_maker"] = describe(rule.decision_maker)
    row: dict[str, Any] = {"id": record.id, "title": record.title, "allowed": allowed}
    if note is not None:
        row["REJECTED"] = note
    return _compact(row)


def contact_prompt(records: Sequence[ContactRecord], feedback: Sequence[FailedCheck],
                   note_for: dict[str, str] | None = None) -> str:
    """One line per contact the model labels; ``note_for`` maps a rejected record's id to the id of the contact
    that stands for its title here (a title is asked once per chunk)."""
    notes = _notes(feedback, note_for)
    lines = "\n".join(_contact_line(r, title_rule(r.title), notes.get(r.id)) for r in records)
    return f"CONTACTS ({len(records)}):\n{lines}{feedback_section(feedback)}"


BAND_WORDS = {"small": "under 20,000", "medium": "20,000 to 100,000", "large": "100,000 or more"}


def opportunity_prompt(records: Sequence[OpportunityRecord], feedback: Sequence[FailedCheck],
                       note_for: dict[str, str] | None = None) -> str:
    """One line per deal profile the model assesses (stage and amount band; the deal named stands for all of its
    profile in this chunk); ``note_for`` maps a rejected deal's id to the id standing for its profile."""
    notes = _notes(feedback, note_for)
    lines = "\n".join(
        _compact({"id": r.id, "stage": stage_name(r.stage), "amount": BAND_WORDS[amount_band(r.amount)],
                  "allowed_risk": describe(risk_allowed(r.stage, r.amount)),
                  **({"REJECTED": notes[r.id]} if r.id in notes else {})})
        for r in records
    )
    return f"OPPORTUNITIES ({len(records)}):\n{lines}{feedback_section(feedback)}"


def insights_prompt(facts: Sequence[Fact], feedback: Sequence[FailedCheck]) -> str:
    lines = "\n".join(f"{fact.id} | {fact.label} | {fact_value(fact)} | {UNITS[fact.unit]}" for fact in facts)
    return f"FACTS ({len(facts)}):\n{lines}{feedback_section(feedback)}"
