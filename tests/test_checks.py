"""The deterministic gate layer: each rule rejects what it should, explains why, and passes what it should."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from services.analyzer.activities import LABEL_SCHEMA, one_label_per_title
from services.validator import checks
from services.validator.judge import attempt_sample, judgement_schema
from shared.contracts import (
    ContactChunkOutput,
    ContactEnrichment,
    OpportunityChunkOutput,
    OpportunityRecord,
    OpportunityRisk,
)
from shared.contracts import ContactRecord as Contact


def contact(id: str, title: str) -> Contact:
    return Contact(id=id, name=f"P{id}", company="Acme", title=title, created_date=date(2024, 1, 1))


def label(id: str, seniority: Any = "mid", decision_maker: bool = False, department: Any = "other"
          ) -> ContactEnrichment:
    return ContactEnrichment(id=id, seniority=seniority, department=department, decision_maker=decision_maker,
                             rationale="title")


def test_ids_answered_exactly_once() -> None:
    failures = checks.check_ids("contact", ["1", "2", "3"], ["1", "1", "4"])
    assert [(f.check, f.record_id) for f in failures] == [
        ("missing_id", "2"), ("missing_id", "3"), ("duplicate_id", "1"), ("invented_id", "4")]
    assert failures[2].reason == "contact id 1 was answered 2 times; answer it once"


def contact_failures(title: str, seniority: str, department: str, maker: bool) -> list[str]:
    output = ContactChunkOutput(enrichments=[label("7", seniority, maker, department)])
    return [f.check for f in checks.check_contacts([contact("7", title)], output)]


# Each rule: a record it rejects beside a close neighbour it accepts (the same title, one label apart; or the same
# label on a title one word apart).
@pytest.mark.parametrize(
    ("title", "seniority", "department", "maker", "expected"),
    [
        ("CEO", "executive", "executive", True, []),
        ("CEO", "senior", "executive", True, ["title_seniority"]),
        ("CEO", "executive", "executive", False, ["decision_maker"]),
        ("Founder & CEO", "executive", "executive", True, []),
        ("CTO", "executive", "engineering", True, []),
        ("CTO", "executive", "sales", True, ["title_department"]),
        ("President", "executive", "executive", True, []),
        ("Vice President, Sales", "executive", "sales", True, ["title_seniority"]),
        ("Vice President, Sales", "senior", "sales", True, []),
        ("Vice President, Sales", "senior", "marketing", True, ["title_department"]),
        ("Director of Finance", "senior", "finance", True, []),
        ("Director of Finance", "senior", "finance", False, ["decision_maker"]),
        ("Managing Director", "executive", "executive", True, []),
        ("Senior Software Engineer", "senior", "engineering", False, []),
        ("Senior Software Engineer", "mid", "engineering", False, ["title_seniority"]),
        ("Software Engineer", "mid", "engineering", False, []),
        ("Software Engineer", "senior", "engineering", False, ["title_seniority"]),
        ("Software Engineer", "mid", "engineering", True, ["decision_maker"]),
        ("Software Engineer", "junior", "engineering", False, ["title_seniority"]),  # no entry-level word
        ("Junior Software Engineer", "junior", "engineering", False, []),
        ("Sales Development Rep", "junior", "sales", False, []),
        ("Sales Development Rep", "senior", "sales", False, ["title_seniority"]),
        ("Engineering Manager", "senior", "engineering", False, []),
        ("Engineering Manager", "mid", "engineering", True, ["decision_maker"]),  # managers influence, do not sign
        ("General Manager", "senior", "operations", True, []),
        ("General Manager", "senior", "operations", False, ["decision_maker"]),
        ("Principal Engineer", "senior", "engineering", False, []),
        ("Principal Engineer", "mid", "engineering", False, ["title_seniority"]),
        ("Staff Software Engineer", "senior", "engineering", False, []),
        ("Staff Accountant", "mid", "finance", False, []),  # 'staff' ranks an engineer, not an accountant
        ("Sr. Accountant", "senior", "finance", False, []),
        ("Sr. Accountant", "mid", "finance", False, ["title_seniority"]),
        ("Lead Developer", "senior", "engineering", False, []),
        ("Junior Developer", "junior", "engineering", False, []),
        ("Junior Developer", "mid", "engineering", False, ["title_seniority"]),
        ("Marketing Intern", "junior", "marketing", False, []),
        ("Marketing Intern", "junior", "marketing", True, ["decision_maker"]),
        ("Product Owner", "mid", "product", False, []),
        ("Product Owner", "executive", "product", True, ["title_seniority", "decision_maker"]),
        ("Account Owner", "mid", "sales", False, []),
        ("Owner", "executive", "executive", True, []),
        ("Account Executive", "mid", "sales", False, []),
        ("Account Executive", "executive", "executive", True,
         ["title_seniority", "title_department", "decision_maker"]),
        ("Executive Assistant to the CEO", "junior", "operations", False, []),
        ("Executive Assistant to the CEO", "executive", "executive", True, ["title_seniority", "decision_maker"]),
        ("Chief of Staff", "senior", "operations", False, []),
        ("Chief of Staff", "executive", "executive", True, ["title_seniority", "decision_maker"]),
        ("Chief Financial Officer", "executive", "finance", True, []),
        ("Office Manager", "mid", "operations", False, []),
        ("Office Manager", "mid", "engineering", False, ["title_department"]),
        ("Customer Success Manager", "mid", "support", False, []),
        ("Customer Success Manager", "mid", "sales", False, ["title_department"]),
        ("General Counsel", "mid", "legal", False, []),
        ("Analyst", "mid", "other", False, []),
        ("Analyst", "mid", "unknown", False, ["title_department"]),  # a titled contact has a department
        ("Analyst", "unknown", "other", False, ["title_seniority"]),
        ("Data Analyst", "mid", "engineering", False, []),
        ("Data Analyst", "mid", "hr", False, ["title_department"]),
        ("", "unknown", "unknown", False, []),
        ("", "mid", "unknown", False, ["title_seniority"]),
    ],
)
def test_title_rules(title: str, seniority: str, department: str, maker: bool, expected: list[str]) -> None:
    assert contact_failures(title, seniority, department, maker) == expected


def test_title_rule_reasons_say_what_is_allowed_and_why() -> None:
    output = ContactChunkOutput(enrichments=[label("1", "mid", False, "engineering")])
    [failure] = checks.check_contacts([contact("1", "Senior Software Engineer")], output)
    assert failure.reason == "contact 1 'Senior Software Engineer': seniority must be senior ('senior'), not mid"
    output = ContactChunkOutput(enrichments=[label("1", "executive", True, "product")])
    reasons = [f.reason for f in checks.check_contacts([contact("1", "Product Owner")], output)]
    assert reasons[0] == ("contact 1 'Product Owner': seniority must be mid or senior ('product owner' (not an "
                          "executive)), not executive")


def test_a_reason_names_its_record_as_written_for_each_rule() -> None:
    """The record a reason is about, named the same way by every rule: a contact by its title (or as blank), a deal
    by its stage and its amount to the unit."""
    output = ContactChunkOutput(enrichments=[label("9", "mid", False, "unknown")])
    [failure] = checks.check_contacts([contact("9", "  ")], output)
    assert failure.reason == "contact 9 (blank title): seniority must be unknown (a blank title), not mid"
    deal = OpportunityRecord(id="7", name="Big", stage="closed-won", amount=Decimal("1234567.50"), contact_id="1",
                             close_date=None)
    risk = OpportunityRisk(id="7", risk="high", reason="won", next_action="none")
    [failure] = checks.check_opportunities([deal], OpportunityChunkOutput(risks=[risk]))
    assert failure.reason == "opportunity 7 (Closed Won, 1,234,568) is won: risk must be low, not high"
    assert not checks.check_opportunities([deal], OpportunityChunkOutput(risks=[risk.model_copy(
        update={"risk": "low"})]))


def test_the_same_title_gets_the_same_labels() -> None:
    records = [contact("1", "Engineering Manager"), contact("2", "engineering  manager"),
               contact("3", "Financial Analyst")]
    same = ContactChunkOutput(enrichments=[label("1", "mid", False, "engineering"),
                                           label("2", "mid", False, "engineering"),
                                           label("3", "mid", False, "finance")])
    assert checks.check_contacts(records, same) == []
    split = ContactChunkOutput(enrichments=[label("1", "mid", False, "engineering"),
                                            label("2", "senior", False, "engineering"),
                                            label("3", "mid", False, "finance")])
    [failure] = checks.check_contacts(records, split)
    assert failure.check == "inconsistent_title" and failure.record_id == "2"


def opportunity(id: str, stage: str, amount: float = 10_000.0) -> OpportunityRecord:
    return OpportunityRecord(id=id, name="Deal", stage=stage, amount=amount, contact_id="1", close_date=None)


@pytest.mark.parametrize(
    ("stage", "amount", "risk", "reason", "action", "expected"),
    [
        ("Closed Lost", 10_000, "low", "lost", "Negotiate a discount to close", ["lost_deal_closing_action"]),
        ("closed lost", 10_000, "low", "lost", "none", []),
        ("Closed Lost", 10_000, "low", "lost", "post-mortem with the account team", []),
        ("Closed Won", 10_000, "high", "won", "onboard", ["won_deal_risk"]),
        ("closed won", 10_000, "low", "won", "onboard", []),
        ("Prospecting", 150_000, "high", "Prospecting, large", "qualify the budget", []),
        ("Prospecting", 150_000, "low", "Prospecting, large", "qualify the budget", ["risk_for_stage_and_amount"]),
        ("Negotiation", 8_000, "low", "small deal in negotiation", "agree terms", []),
        ("Negotiation", 8_000, "high", "small deal in negotiation", "agree terms", ["risk_for_stage_and_amount"]),
        ("Proposal", 50_000, "medium", "50,000 at stake", "send the proposal", []),
        ("Proposal", 50_000, "medium", "$50k at stake", "send the proposal", []),
        ("Proposal", 50_000, "medium", "60,000 at stake", "send the proposal", ["reason_names_deal"]),
        ("Proposal", 50_000, "medium", "Negotiation stalled", "send the proposal", ["reason_names_deal"]),
        ("Proposal", 50_000, "medium", "proposal sent", "none", ["next_action_for_stage"]),
        ("Proposal", 50_000, "medium", "proposal sent", "onboard the customer", ["next_action_for_stage"]),
    ],
)
def test_opportunity_rules(stage: str, amount: float, risk: Any, reason: str, action: str,
                           expected: list[str]) -> None:
    output = OpportunityChunkOutput(risks=[OpportunityRisk(id="1", risk=risk, reason=reason, next_action=action)])
    assert [f.check for f in checks.check_opportunities([opportunity("1", stage, amount)], output)] == expected


def test_ai_sample_is_drawn_afresh_per_attempt_and_bounded() -> None:
    first, again = attempt_sample(list(range(100)), 4, "run:step:1"), attempt_sample(list(range(100)), 4, "run:step:1")
    second = attempt_sample(list(range(100)), 4, "run:step:2")
    assert first == again and first != second and first == sorted(first) and len(first) == 4
    assert attempt_sample([1, 2], 5, "s") == [1, 2]
    assert attempt_sample([1, 2], 0, "s") == []


def test_judgement_schema_pins_ids_to_the_sample() -> None:
    schema = judgement_schema(["3", "9"])["json_schema"]["schema"]
    problem = schema["$defs"]["Problem"]
    assert problem["properties"]["id"]["enum"] == ["3", "9"]
    assert schema["properties"]["problems"]["maxItems"] == 5


def _frame(rows: list[ContactEnrichment]) -> pl.DataFrame:
    return pl.DataFrame([r.model_dump() for r in rows], schema=LABEL_SCHEMA).with_row_index("row")


def test_one_title_one_label_across_chunks() -> None:
    # three chunks labelled "Software Engineer" apart, each within what the title allows: the run keeps the label
    # most of its contacts got, and says how many contacts it changed
    titles = pl.DataFrame({"id": ["1", "2", "3", "4"],
                           "title": ["Software Engineer", "software engineer", "Software Engineer", "CEO"]})
    chunks = [[label("1", "mid", False, "engineering"), label("4", "executive", True, "executive")],
              [label("2", "junior", False, "engineering")], [label("3", "mid", False, "engineering")]]
    labels, changed = one_label_per_title(_frame([r for chunk in chunks for r in chunk]), titles)
    assert labels.select("id", "seniority").rows() == [("1", "mid"), ("4", "executive"), ("2", "mid"), ("3", "mid")]
    assert labels.columns == ["row", *LABEL_SCHEMA] and changed == 1
    first = _frame(chunks[0])
    assert one_label_per_title(first, titles)[0].equals(first) and one_label_per_title(first, titles)[1] == 0


def test_a_tie_between_labels_of_one_title_goes_to_the_one_seen_first() -> None:
    titles = pl.DataFrame({"id": ["1", "2", "3"], "title": ["Software Engineer", "Software Engineer", ""]})
    rows = [label("1", "junior", False, "engineering"), label("2", "mid", False, "engineering"),
            label("3", "unknown", False, "unknown")]
    labels, changed = one_label_per_title(_frame(rows), titles)
    assert labels.select("id", "seniority").rows() == [("1", "junior"), ("2", "junior"), ("3", "unknown")]
    assert changed == 1
