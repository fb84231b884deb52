"""The deterministic layer of the gate: cheap checks that need no model and explain every failure.

Each reason is written for the model that will retry the step: it names the record, what is wrong and what
would be right.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from shared.contracts import (
    ContactChunkOutput,
    ContactRecord,
    FailedCheck,
    InsightsContext,
    InsightsOutput,
    OpportunityChunkOutput,
    OpportunityRecord,
)
from shared.titles import title_rank

CLOSING_ACTION = re.compile(
    r"\b(close|closing|sign|signature|negotiat\w*|contract|proposal|push|discount|demo|follow[- ]?up)\b",
    re.IGNORECASE,
)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def check_ids(kind: str, expected: Sequence[str], answered: Iterable[str]) -> list[FailedCheck]:
    """Every input id answered exactly once, and no id that is not in the input."""
    counts = Counter(answered)
    known = set(expected)
    failures = [
        FailedCheck(check="missing_id", record_id=i, reason=f"{kind} id {i} was not answered; answer every id once")
        for i in expected
        if counts[i] == 0
    ]
    failures += [
        FailedCheck(check="duplicate_id", record_id=i, reason=f"{kind} id {i} was answered {n} times; answer it once")
        for i, n in counts.items()
        if n > 1 and i in known
    ]
    failures += [
        FailedCheck(check="invented_id", record_id=i,
                    reason=f"{kind} id {i} is not in the input; use only the ids given")
        for i in counts
        if i not in known
    ]
    return failures


def check_contacts(records: Sequence[ContactRecord], output: ContactChunkOutput) -> list[FailedCheck]:
    failures = check_ids("contact", [r.id for r in records], (e.id for e in output.enrichments))
    titles = {r.id: r.title for r in records}
    for item in output.enrichments:
        title = titles.get(item.id)
        if title is None:
            continue
        rank = title_rank(title)
        if rank is None and item.seniority == "unknown":
            failures.append(FailedCheck(
                check="titled_contact_unknown", record_id=item.id,
                reason=f"contact {item.id} {title!r}: seniority must be senior, mid or junior, not unknown (unknown "
                "is for a blank title)",
            ))
        elif rank == "unknown" and item.seniority != "unknown":
            failures.append(FailedCheck(
                check="blank_title_label", record_id=item.id,
                reason=f"contact {item.id} has no title: seniority must be unknown, not {item.seniority}",
            ))
        elif rank in ("executive", "senior"):
            allowed = ("executive",) if rank == "executive" else ("executive", "senior")
            if item.seniority not in allowed:
                failures.append(FailedCheck(
                    check=f"{rank}_title_seniority", record_id=item.id,
                    reason=f"contact {item.id} {title!r}: seniority must be {rank}, not {item.seniority}",
                ))
            if not item.decision_maker:
                failures.append(FailedCheck(
                    check=f"{rank}_title_decision_maker", record_id=item.id,
                    reason=f"contact {item.id} {title!r}: decision_maker must be true",
                ))
        elif rank is None and item.seniority == "executive":
            failures.append(FailedCheck(
                check="executive_without_executive_title", record_id=item.id,
                reason=f"contact {item.id} {title!r}: seniority must not be executive, which is only for C-level, "
                "founders, presidents and owners; choose senior, mid or junior",
            ))
        elif rank == "junior":
            if item.seniority in ("executive", "senior"):
                failures.append(FailedCheck(
                    check="junior_title_seniority", record_id=item.id,
                    reason=f"contact {item.id} {title!r}: seniority must be junior, not {item.seniority}",
                ))
            if item.decision_maker:
                failures.append(FailedCheck(
                    check="junior_title_decision_maker", record_id=item.id,
                    reason=f"contact {item.id} {title!r}: decision_maker must be false",
                ))
    return failures


def check_opportunities(records: Sequence[OpportunityRecord], output: OpportunityChunkOutput) -> list[FailedCheck]:
    failures = check_ids("opportunity", [r.id for r in records], (r.id for r in output.risks))
    stages = {r.id: r.stage.strip().casefold() for r in records}
    for item in output.risks:
        stage = stages.get(item.id)
        if stage == "closed lost" and CLOSING_ACTION.search(item.next_action):
            failures.append(FailedCheck(
                check="lost_deal_closing_action", record_id=item.id,
                reason=f"opportunity {item.id} is Closed Lost but its next action {item.next_action!r} tries to "
                "close it; give 'none' or a post-mortem",
            ))
        if stage == "closed won" and item.risk == "high":
            failures.append(FailedCheck(
                check="won_deal_high_risk", record_id=item.id,
                reason=f"opportunity {item.id} is Closed Won: risk must be low, not high",
            ))
    return failures


def _close(claimed: float, actual: float) -> bool:
    """Equal up to the rounding a writer may apply: to a whole number, one decimal, or three significant figures."""
    places = 0.5 if claimed == int(claimed) else 0.051
    return abs(claimed - actual) <= max(places, 0.005 * abs(actual))


def _allowed_numbers(context: InsightsContext) -> list[float]:
    values = [f.value for f in context.figures]
    values += [s.value for s in context.facts.opportunities.stage_breakdown]
    values += [s.count for s in context.facts.opportunities.stage_breakdown]
    values += [c.count for c in context.facts.contacts.company_distribution]
    values += [c.count for c in context.summary.seniority + context.summary.departments + context.summary.risk_levels]
    values += [d.amount for d in context.summary.riskiest_deals]
    return values


def check_insights(context: InsightsContext, output: InsightsOutput, companies: set[str],
                   opportunity_ids: set[str]) -> list[FailedCheck]:
    """Every cited figure equals the fact it names; every number, company and deal it names exists."""
    figures = {f.fact: f.value for f in context.figures}
    allowed = _allowed_numbers(context)
    failures: list[FailedCheck] = []
    for number, insight in enumerate(output.insights, start=1):
        for citation in insight.citations:
            actual = figures.get(citation.fact)
            if actual is None:
                failures.append(FailedCheck(
                    check="unknown_figure", record_id=str(number),
                    reason=f"insight {number} cites {citation.fact!r}, which is not a figure; cite names from "
                    "FIGURES only",
                ))
            elif not _close(citation.value, actual):
                failures.append(FailedCheck(
                    check="wrong_figure", record_id=str(number),
                    reason=f"insight {number} cites {citation.fact} = {citation.value:g} but it is {actual:g}",
                ))
        for company in insight.companies:
            if company.casefold() not in companies:
                failures.append(FailedCheck(
                    check="unknown_company", record_id=str(number),
                    reason=f"insight {number} names company {company!r}, which is not in the contacts",
                ))
        for deal in insight.opportunities:
            if deal not in opportunity_ids:
                failures.append(FailedCheck(
                    check="unknown_opportunity", record_id=str(number),
                    reason=f"insight {number} names opportunity {deal!r}, which is not in the export",
                ))
        for text in NUMBER.findall(f"{insight.title} {insight.detail}"):
            value = float(text.replace(",", ""))
            if value < 10 or 1900 <= value <= 2100:
                continue  # small counts and years are too ambiguous to police
            if not any(_close(value, candidate) or _close(value * 1000, candidate) for candidate in allowed):
                failures.append(FailedCheck(
                    check="unsupported_number", record_id=str(number),
                    reason=f"insight {number} states {text}, which matches no computed figure; use the FIGURES",
                ))
    return failures
