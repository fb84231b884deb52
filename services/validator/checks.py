"""The deterministic layer of the gate: cheap checks that need no model and explain every failure.

Each reason is written for the model that will retry the step: it names the record, what is wrong and what
would be right.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from services.validator.numbers import numbers_in
from shared.contracts import (
    ContactChunkOutput,
    ContactEnrichment,
    ContactRecord,
    FailedCheck,
    OpportunityChunkOutput,
    OpportunityRecord,
)
from shared.taxonomy import (
    CLOSING_ACTION,
    FUNCTIONS,
    NO_ACTION,
    OPEN_STAGES,
    amount_band,
    describe,
    risk_allowed,
    stage_key,
    stage_name,
    text_key,
    title_rule,
)


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
    """Every label within what its title allows (``shared.taxonomy``), and one title, one set of labels."""
    failures = check_ids("contact", [r.id for r in records], (e.id for e in output.enrichments))
    titles = {r.id: r.title for r in records}
    first_of_title: dict[str, ContactEnrichment] = {}
    for item in output.enrichments:
        title = titles.get(item.id)
        if title is None:
            continue
        rule = title_rule(title)
        # the record as a reason names it, written only for a reason (most records have none)
        where = functools.partial(_contact_where, item.id, title)
        if item.seniority not in rule.seniority:
            failures.append(FailedCheck(
                check="title_seniority", record_id=item.id,
                reason=f"{where()}: seniority must be {describe(rule.seniority)} ({rule.because}), "
                f"not {item.seniority}",
            ))
        if item.department not in rule.department:
            allowed = ("a function (sales, engineering, marketing, finance, hr, operations, product, support, "
                       "legal or other), not " + item.department) if rule.department == FUNCTIONS else (
                f"{describe(rule.department)}, not {item.department}")
            failures.append(FailedCheck(check="title_department", record_id=item.id,
                                        reason=f"{where()}: department must be {allowed}"))
        if item.decision_maker not in rule.decision_maker:
            failures.append(FailedCheck(
                check="decision_maker", record_id=item.id,
                reason=f"{where()}: decision_maker must be {describe(rule.decision_maker)} ({rule.because})",
            ))
        first = first_of_title.setdefault(rule.key, item)
        if first is not item and _labels(first) != _labels(item):
            failures.append(FailedCheck(
                check="inconsistent_title", record_id=item.id,
                reason=f"{where()} is labelled {_describe_labels(item)} but contact {first.id} with the same title "
                f"{_describe_labels(first)}; the same title gets the same labels",
            ))
    return failures


def _contact_where(id: str, title: str) -> str:
    return f"contact {id} {title!r}" if title.strip() else f"contact {id} (blank title)"


def _deal_where(deal: OpportunityRecord) -> str:
    return f"opportunity {deal.id} ({stage_name(deal.stage)}, {deal.amount:,.0f})"


def _labels(item: ContactEnrichment) -> tuple[str, str, bool]:
    return item.seniority, item.department, item.decision_maker


def _describe_labels(item: ContactEnrichment) -> str:
    return f"{item.seniority}/{item.department}/{'decision maker' if item.decision_maker else 'not deciding'}"


def check_opportunities(records: Sequence[OpportunityRecord], output: OpportunityChunkOutput) -> list[FailedCheck]:
    """Closed deals: no open risk, no closing action. Open deals: a risk allowed for the stage and amount band, a
    reason that names the deal's real stage or amount, and a next action."""
    failures = check_ids("opportunity", [r.id for r in records], (r.id for r in output.risks))
    deals = {r.id: r for r in records}
    for item in output.risks:
        deal = deals.get(item.id)
        if deal is None:
            continue
        stage = stage_key(deal.stage)
        where = functools.partial(_deal_where, deal)  # written only for a reason, as a contact's
        if stage == "closed lost" and CLOSING_ACTION.search(item.next_action):
            failures.append(FailedCheck(
                check="lost_deal_closing_action", record_id=item.id,
                reason=f"{where()} is lost but its next action {item.next_action!r} tries to close it; give 'none' or "
                "a post-mortem",
            ))
        if stage == "closed won" and item.risk != "low":
            failures.append(FailedCheck(check="won_deal_risk", record_id=item.id,
                                        reason=f"{where()} is won: risk must be low, not {item.risk}"))
        if stage not in OPEN_STAGES:
            continue
        allowed = risk_allowed(deal.stage, deal.amount)
        if item.risk not in allowed:
            failures.append(FailedCheck(
                check="risk_for_stage_and_amount", record_id=item.id,
                reason=f"{where()}: risk must be {describe(allowed)} for a {amount_band(deal.amount)} "
                f"deal in {stage_name(deal.stage)}, not {item.risk}",
            ))
        if not _names_stage_or_amount(item.reason, deal):
            failures.append(FailedCheck(
                check="reason_names_deal", record_id=item.id,
                reason=f"{where()}: the reason {item.reason!r} must name its stage ({stage_name(deal.stage)}) or its "
                f"amount ({deal.amount:,.0f})",
            ))
        if NO_ACTION.match(item.next_action) or stage_mentioned_elsewhere(item.next_action, stage):
            failures.append(FailedCheck(
                check="next_action_for_stage", record_id=item.id,
                reason=f"{where()}: the next action {item.next_action!r} does not fit an open deal in "
                f"{stage_name(deal.stage)}; give a step that moves it forward",
            ))
    return failures


_CLOSED_OUTCOME = re.compile(r"\b(onboard\w*|post-?mortem|kick-?off|renewal celebration)\b", re.IGNORECASE)


def stage_mentioned_elsewhere(text: str, stage: str) -> bool:
    """True when an action speaks of a closed outcome for a deal that is still open ('onboard the customer',
    'post-mortem'), which fits a won or lost deal, not this one."""
    return bool(_CLOSED_OUTCOME.search(text))


def _names_stage_or_amount(reason: str, deal: OpportunityRecord) -> bool:
    if stage_key(deal.stage) in text_key(reason) or text_key(deal.stage) in text_key(reason):
        return True
    return any(number.kind == "plain" and number.states(deal.amount) for number in numbers_in(reason))
