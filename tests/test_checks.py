"""The deterministic gate layer: each rule rejects what it should, explains why, and passes what it should."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.validator import checks
from services.validator.judge import judgement_schema, spread_sample
from shared.contracts import (
    ArtifactRef,
    ContactChunkOutput,
    ContactEnrichment,
    ContactFacts,
    EnrichmentSummary,
    FactCitation,
    Facts,
    Insight,
    InsightsContext,
    InsightsOutput,
    OpportunityChunkOutput,
    OpportunityFacts,
    OpportunityRecord,
    OpportunityRisk,
    StageItem,
)
from shared.contracts import ContactRecord as Contact


def contact(id: str, title: str) -> Contact:
    return Contact(id=id, name=f"P{id}", company="Acme", title=title, created_date=date(2024, 1, 1))


def label(id: str, seniority: Any = "mid", decision_maker: bool = False) -> ContactEnrichment:
    return ContactEnrichment(id=id, seniority=seniority, department="other", decision_maker=decision_maker,
                             rationale="title")


def test_ids_answered_exactly_once() -> None:
    failures = checks.check_ids("contact", ["1", "2", "3"], ["1", "1", "4"])
    assert [(f.check, f.record_id) for f in failures] == [
        ("missing_id", "2"), ("missing_id", "3"), ("duplicate_id", "1"), ("invented_id", "4")]
    assert failures[2].reason == "contact id 1 was answered 2 times; answer it once"


@pytest.mark.parametrize(
    ("title", "seniority", "maker", "expected"),
    [
        ("CEO", "executive", True, []),
        ("CEO", "junior", True, ["executive_title_seniority"]),
        ("Co-Founder & CTO", "senior", False, ["executive_title_seniority", "executive_title_decision_maker"]),
        ("Head of Data", "junior", False, ["senior_title_seniority", "senior_title_decision_maker"]),
        ("Director of Finance", "executive", True, []),
        ("President", "mid", True, ["executive_title_seniority"]),
        ("Vice President, Sales", "senior", True, []),
        ("Marketing Intern", "executive", True, ["junior_title_seniority", "junior_title_decision_maker"]),
        ("Intern", "junior", False, []),
        ("", "senior", False, ["blank_title_label"]),
        ("", "unknown", False, []),
        ("Developer", "senior", True, []),  # ambiguous titles are left to the AI layer
        ("Product Manager", "executive", True, ["executive_without_executive_title"]),
        ("Account Executive", "unknown", False, ["titled_contact_unknown"]),
    ],
)
def test_title_rules(title: str, seniority: str, maker: bool, expected: list[str]) -> None:
    output = ContactChunkOutput(enrichments=[label("7", seniority, maker)])
    assert [f.check for f in checks.check_contacts([contact("7", title)], output)] == expected


def test_title_rule_reason_is_actionable() -> None:
    output = ContactChunkOutput(enrichments=[label("1", "junior", True)])
    [failure] = checks.check_contacts([contact("1", "CEO")], output)
    assert failure.reason == "contact 1 'CEO': seniority must be executive, not junior"


def opportunity(id: str, stage: str) -> OpportunityRecord:
    return OpportunityRecord(id=id, name="Deal", stage=stage, amount=10.0, contact_id="1", close_date=None)


@pytest.mark.parametrize(
    ("stage", "risk", "action", "expected"),
    [
        ("Closed Lost", "low", "Negotiate a discount to close", ["lost_deal_closing_action"]),
        ("closed lost", "low", "none", []),
        ("Closed Lost", "low", "post-mortem with the account team", []),
        ("Closed Won", "high", "onboard", ["won_deal_high_risk"]),
        ("Negotiation", "high", "send the contract", []),
    ],
)
def test_opportunity_rules(stage: str, risk: Any, action: str, expected: list[str]) -> None:
    output = OpportunityChunkOutput(risks=[OpportunityRisk(id="1", risk=risk, reason="stage", next_action=action)])
    assert [f.check for f in checks.check_opportunities([opportunity("1", stage)], output)] == expected


def context() -> InsightsContext:
    facts = Facts(
        contacts=ContactFacts(total_contacts=5, unique_companies=3, top_company="Acme Corp", top_company_contacts=3,
                              company_distribution=[], unique_titles=5, missing_titles=0, duplicate_names=0),
        opportunities=OpportunityFacts(
            total_opportunities=4, pipeline_value=155000.0, won_value=80000.0, lost_value=0.0,
            win_rate_by_value_pct=51.6, average_deal_value=38750.0,
            stage_breakdown=[StageItem(stage="Closed Won", count=2, value=80000.0)], orphan_opportunities=0,
            orphan_opportunity_ids=[]),
    )
    summary = EnrichmentSummary(enriched_contacts=5, seniority=[], departments=[], decision_makers=4,
                                contacts_with_quality_flags=0, assessed_opportunities=4, risk_levels=[],
                                high_risk_value=0.0, riskiest_deals=[])
    figures = [FactCitation(fact="pipeline_value", value=155000.0),
               FactCitation(fact="win_rate_by_value_pct", value=51.6),
               FactCitation(fact="total_contacts", value=5.0)]
    return InsightsContext(facts=facts, summary=summary, figures=figures, companies=ArtifactRef(key="c"),
                           opportunity_ids=ArtifactRef(key="o"))


def insights(*items: Insight) -> InsightsOutput:
    filler = Insight(title="Contacts", detail="Few contacts.", citations=[FactCitation(fact="total_contacts",
                                                                                       value=5)])
    return InsightsOutput(insights=[*items, filler, filler][:max(3, len(items))])


def test_insight_figures_must_match_with_rounding_tolerance() -> None:
    good = Insight(title="Win rate", detail="Won 52% of value, $155k pipeline.",
                   citations=[FactCitation(fact="win_rate_by_value_pct", value=51.6),
                              FactCitation(fact="pipeline_value", value=155000)])
    assert checks.check_insights(context(), insights(good), {"acme corp"}, set()) == []
    wrong = Insight(title="Pipeline", detail="Big pipeline.", citations=[FactCitation(fact="pipeline_value",
                                                                                      value=165000)])
    [failure] = checks.check_insights(context(), insights(wrong), set(), set())
    assert failure.reason == "insight 1 cites pipeline_value = 165000 but it is 155000"


def test_insight_names_only_real_companies_and_figures() -> None:
    item = Insight(title="Globex leads", detail="Globex has 4,200 contacts.",
                   citations=[FactCitation(fact="churn_rate", value=3)], companies=["Globex", "Acme Corp"],
                   opportunities=["7", "9"])
    found = [(f.check, f.reason) for f in checks.check_insights(context(), insights(item), {"acme corp"}, {"7"})]
    assert found == [
        ("unknown_figure", "insight 1 cites 'churn_rate', which is not a figure; cite names from FIGURES only"),
        ("unknown_company", "insight 1 names company 'Globex', which is not in the contacts"),
        ("unknown_opportunity", "insight 1 names opportunity '9', which is not in the export"),
        ("unsupported_number", "insight 1 states 4,200, which matches no computed figure; use the FIGURES"),
    ]


def test_ai_sample_is_spread_and_bounded() -> None:
    assert spread_sample(list(range(100)), 4) == [0, 25, 50, 75]
    assert spread_sample([1, 2], 5) == [1, 2]
    assert spread_sample([1, 2], 0) == []


def test_judgement_schema_pins_ids_to_the_sample() -> None:
    schema = judgement_schema(["3", "9"]).model_json_schema()
    problem = schema["$defs"]["Problem"]
    assert problem["properties"]["id"]["enum"] == ["3", "9"]
    assert schema["properties"]["problems"]["maxItems"] == 5
