"""Measure the gate: how much of what is wrong it catches, how much of what is right it rejects.

    uv run python -m benchmarks.gates [--json FILE] [--enrichments RUN_ENRICHMENTS.jsonl]

It starts from outputs known to be right, taken from the generated sample's hand-labelled ground truth
(``examples/data/sample/ground_truth_contacts.csv``, written by the generator, not derived from the validator),
injects one typed error at a time, and runs the deterministic layer on each: per error class, the share caught;
on the correct outputs, the share wrongly rejected; and the model calls the rules saved. An error is
*rule-checkable* when what it injects lies outside what the record allows by the documented taxonomy; the rest
(a plain "Software Engineer" labelled junior instead of mid) is judgement, left to the AI layer. With
``--enrichments``, it also scores a run's validated labels (``report/enrichments.jsonl``) against the ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from services.analyzer.catalogue import build_catalogue
from services.analyzer.ingest import contact_facts, opportunity_facts, parse_contacts, parse_opportunities
from services.validator.checks import check_contacts, check_opportunities
from services.validator.claims import check_insights
from shared.contracts import (
    ContactChunkOutput,
    ContactEnrichment,
    ContactRecord,
    Fact,
    FactCatalogue,
    Facts,
    FailedCheck,
    Insight,
    InsightsOutput,
    OpportunityChunkOutput,
    OpportunityRecord,
    OpportunityRisk,
    RiskLevel,
    Seniority,
)
from shared.datasets import chunk_frame
from shared.figures import fact_value
from shared.taxonomy import (
    FUNCTIONS,
    OPEN_STAGES,
    STAGE_NAMES,
    amount_band,
    risk_allowed,
    stage_key,
    stage_name,
    title_rule,
)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "sample"
CHUNK = 25
CASES_PER_CHUNK = 4
LADDER: tuple[Seniority, ...] = ("junior", "mid", "senior", "executive")
GOALS = {"rule-checkable caught": "100%", "all injected caught": ">= 95%", "false rejections": "<= 2%"}


# --- what is right ----------------------------------------------------------------------------------------------

def ground_truth(path: Path = SAMPLE / "ground_truth_contacts.csv") -> dict[str, tuple[str, str, bool]]:
    with path.open() as handle:
        return {row["id"]: (row["seniority"], row["department"], row["decision_maker"] == "true")
                for row in csv.DictReader(handle)}


def truthful_risk(deal: OpportunityRecord) -> OpportunityRisk:
    """The house policy for an open deal, written out here on its own: early stages with much at stake are high,
    late stages with little are low, the rest medium; a closed deal carries no risk."""
    stage, band = stage_key(deal.stage), amount_band(deal.amount)
    if stage not in OPEN_STAGES:
        action = "none" if stage == "closed won" else "post-mortem with the account owner"
        return OpportunityRisk(id=deal.id, risk="low", reason=f"deal {stage_name(deal.stage)}", next_action=action)
    early = stage in ("prospecting", "qualification")
    risk: RiskLevel = ("high" if early and band == "large" else "low" if stage == "negotiation" and band == "small"
                       else "medium" if not early or band != "small" else "low")
    return OpportunityRisk(id=deal.id, risk=risk, reason=f"{stage_name(deal.stage)}, {deal.amount:,.0f}",
                           next_action="agree the next step with the buyer")


INSIGHT_VARIANTS = (("open_pipeline_value", "open_pipeline"), ("won_value", "contacts"),
                    ("total_value", "won_value"), ("average_deal_value", "decision_makers"))


def correct_insights(catalogue: FactCatalogue, total: str = "open_pipeline_value", ranking: str = "open_pipeline"
                     ) -> list[Insight]:
    """Five true claims, one of each kind, from the catalogue: a total, a ranking, a share, a comparison and a
    rate; ``total`` and ``ranking`` pick which figure and which ranking."""
    facts = {f.id: f for f in catalogue.facts}
    leader = facts[f"rank:companies_by_{ranking}:1"]
    pipeline_leader = facts["rank:companies_by_open_pipeline:1"]
    share = next(f for f in catalogue.facts if f.entity == pipeline_leader.entity
                 and f.id.endswith(":share_of_open_pipeline"))
    return [
        Insight(title="Headline", text=f"The {facts[total].label} is {fact_value(facts[total])}.", kind="total",
                facts=[total]),
        Insight(title="Leading account", text=f"{leader.entity} leads on {ranking.replace('_', ' ')}, with "
                f"{fact_value(leader)}.", kind="ranking", facts=[leader.id], entity=leader.entity),
        Insight(title="Concentration", text=f"{share.entity} holds {fact_value(share)} of the open pipeline.",
                kind="share", facts=[share.id], entity=share.entity),
        Insight(title="Won and lost", text=f"{fact_value(facts['won_value'])} was won against "
                f"{fact_value(facts['lost_value'])} lost.", kind="comparison", facts=["won_value", "lost_value"]),
        Insight(title="Win rate", text=f"The win rate by count is {fact_value(facts['win_rate_by_count'])}.",
                kind="total", facts=["win_rate_by_count"]),
    ]


# --- what goes wrong ----------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One injected error: the output with it, and whether the documented rules can see it at all."""

    output: Any
    rule_checkable: bool


Injection = Callable[[Any, Sequence[Any], random.Random], Case | None]


def _replace(output: ContactChunkOutput, index: int, **change: object) -> ContactChunkOutput:
    items = list(output.enrichments)
    items[index] = items[index].model_copy(update=change)
    return ContactChunkOutput(enrichments=items)


def wrong_seniority_step(output: ContactChunkOutput, records: Sequence[ContactRecord], rng: random.Random
                         ) -> Case | None:
    index = rng.randrange(len(records))
    label = output.enrichments[index]
    if label.seniority == "unknown":
        return None
    at = LADDER.index(label.seniority)
    steps = [s for s in (at - 1, at + 1) if 0 <= s < len(LADDER)]
    wrong = LADDER[rng.choice(steps)]
    return Case(_replace(output, index, seniority=wrong), wrong not in title_rule(records[index].title).seniority)


def wrong_department(output: ContactChunkOutput, records: Sequence[ContactRecord], rng: random.Random
                     ) -> Case | None:
    index = rng.randrange(len(records))
    label = output.enrichments[index]
    if label.department == "unknown":
        return None
    wrong = rng.choice(sorted(FUNCTIONS - {label.department}))
    return Case(_replace(output, index, department=wrong), wrong not in title_rule(records[index].title).department)


def flipped_decision_maker(output: ContactChunkOutput, records: Sequence[ContactRecord], rng: random.Random
                           ) -> Case | None:
    index = rng.randrange(len(records))
    wrong = not output.enrichments[index].decision_maker
    return Case(_replace(output, index, decision_maker=wrong),
                wrong not in title_rule(records[index].title).decision_maker)


def invented_id(output: ContactChunkOutput, records: Sequence[ContactRecord], rng: random.Random) -> Case:
    return Case(_replace(output, rng.randrange(len(records)), id=f"9{rng.randrange(10**6)}"), True)


def missing_id(output: ContactChunkOutput, records: Sequence[ContactRecord], rng: random.Random) -> Case:
    items = list(output.enrichments)
    items.pop(rng.randrange(len(items)))
    return Case(ContactChunkOutput(enrichments=items), True)


def _open_index(records: Sequence[OpportunityRecord], rng: random.Random) -> int | None:
    open_deals = [i for i, r in enumerate(records) if stage_key(r.stage) in OPEN_STAGES]
    return rng.choice(open_deals) if open_deals else None


def _replace_risk(output: OpportunityChunkOutput, index: int, **change: object) -> OpportunityChunkOutput:
    items = list(output.risks)
    items[index] = items[index].model_copy(update=change)
    return OpportunityChunkOutput(risks=items)


def contradicting_risk(output: OpportunityChunkOutput, records: Sequence[OpportunityRecord], rng: random.Random
                       ) -> Case | None:
    index = rng.randrange(len(records))
    deal = records[index]
    if stage_key(deal.stage) == "closed won":
        return Case(_replace_risk(output, index, risk="high"), True)
    if stage_key(deal.stage) not in OPEN_STAGES:
        return None
    # the level furthest from what the policy gives this stage and amount
    truth = output.risks[index].risk
    wrong: RiskLevel = "low" if truth == "high" else "high"
    return Case(_replace_risk(output, index, risk=wrong), wrong not in risk_allowed(deal.stage, deal.amount))


def reason_names_wrong_stage(output: OpportunityChunkOutput, records: Sequence[OpportunityRecord],
                             rng: random.Random) -> Case | None:
    index = _open_index(records, rng)
    if index is None:
        return None
    other = rng.choice([name for key, name in STAGE_NAMES.items() if key != stage_key(records[index].stage)])
    return Case(_replace_risk(output, index, reason=f"{other}, still early"), True)


def _with(insights: list[Insight], index: int, **change: object) -> InsightsOutput:
    changed = list(insights)
    changed[index] = changed[index].model_copy(update=change)
    return InsightsOutput(insights=changed)


def _cited(insight: Insight, facts: Sequence[Fact]) -> Fact:
    return next(f for f in facts if f.id == insight.facts[0])


def insight_wrong_number(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    total = _cited(insights[0], facts)
    wrong = (total.value * Decimal(rng.choice(["1.3", "0.7", "2"]))).quantize(Decimal(1))
    return Case(_with(insights, 0, text=insights[0].text.replace(fact_value(total), f"${wrong:,}")), True)


def insight_other_unit(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    if rng.random() < 0.5:  # a rate written as money
        rate = _cited(insights[4], facts)
        return Case(_with(insights, 4, text=insights[4].text.replace(fact_value(rate), f"${rate.value}")), True)
    total = _cited(insights[0], facts)  # money written as a rate
    return Case(_with(insights, 0, text=insights[0].text.replace(fact_value(total), f"{total.value}%")), True)


def insight_wrong_superlative_entity(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    first = _cited(insights[1], facts)
    second = next(f for f in facts if f.id == first.id.removesuffix(":1") + ":2")
    assert first.entity and second.entity
    return Case(_with(insights, 1, text=insights[1].text.replace(first.entity, second.entity),
                      entity=second.entity), True)


def insight_share_not_adding_up(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    text = insights[2].text
    share = next(f for f in facts if f.id in insights[2].facts)
    return Case(_with(insights, 2, text=text.replace(fact_value(share), f"{share.value + 7}%")), True)


def insight_citing_nothing(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    changed = list(insights)
    changed[3] = Insight.model_construct(**{**insights[3].model_dump(), "facts": []})
    return Case(InsightsOutput.model_construct(insights=changed), True)


def insight_name_without_fact(insights: list[Insight], facts: Sequence[Fact], rng: random.Random) -> Case:
    named = {i.entity for i in insights}
    others = sorted({f.entity for f in facts if f.entity_kind == "company" and f.entity not in named and f.entity})
    return Case(_with(insights, 0, text=f"{insights[0].text} It sits with {rng.choice(others)}."), True)


CONTACT_ERRORS: dict[str, Injection] = {
    "wrong seniority step": wrong_seniority_step, "wrong department": wrong_department,
    "flipped decision maker": flipped_decision_maker, "invented id": invented_id, "missing id": missing_id,
}
OPPORTUNITY_ERRORS: dict[str, Injection] = {
    "risk contradicting stage and amount": contradicting_risk, "reason naming the wrong stage":
        reason_names_wrong_stage,
}
INSIGHT_ERRORS: dict[str, Callable[[list[Insight], Sequence[Fact], random.Random], Case]] = {
    "insight with a wrong number": insight_wrong_number, "a number in another unit": insight_other_unit,
    "wrong entity in a superlative": insight_wrong_superlative_entity,
    "a share that does not add up": insight_share_not_adding_up, "a claim citing nothing": insight_citing_nothing,
    "a name no cited fact is about": insight_name_without_fact,
}


# --- the measurement ----------------------------------------------------------------------------------------------

@dataclass
class ClassResult:
    name: str
    cases: int = 0
    caught: int = 0
    rule_checkable: int = 0
    rule_checkable_caught: int = 0

    judged: int = 0
    judge_caught: int = 0

    def add(self, case: Case, caught: bool) -> None:
        self.cases += 1
        self.caught += caught
        self.rule_checkable += case.rule_checkable
        self.rule_checkable_caught += case.rule_checkable and caught


@dataclass
class Review:
    """An output for the AI layer to review: one the rules passed, with an error in it or not."""

    kind: str
    records: Sequence[Any]
    output: Any
    error_class: str | None = None


@dataclass
class Evaluation:
    classes: list[ClassResult] = field(default_factory=list)
    missed_by_rules: list[Review] = field(default_factory=list)
    correct: list[Review] = field(default_factory=list)
    catalogue: FactCatalogue | None = None
    judge: dict[str, Any] = field(default_factory=dict)
    correct_outputs: int = 0
    false_rejections: int = 0
    false_rejection_reasons: list[str] = field(default_factory=list)
    records_settled_in_code: int = 0
    records: int = 0
    judge_calls_saved: int = 0

    def totals(self) -> dict[str, Any]:
        cases = sum(c.cases for c in self.classes)
        caught = sum(c.caught for c in self.classes)
        checkable = sum(c.rule_checkable for c in self.classes)
        checkable_caught = sum(c.rule_checkable_caught for c in self.classes)
        return {
            "injected": cases, "caught": caught, "caught_share": caught / cases if cases else None,
            "rule_checkable": checkable, "rule_checkable_caught": checkable_caught,
            "rule_checkable_share": checkable_caught / checkable if checkable else None,
            "correct_outputs": self.correct_outputs, "false_rejections": self.false_rejections,
            "false_rejection_share": self.false_rejections / self.correct_outputs if self.correct_outputs else None,
            "records": self.records, "records_settled_in_code": self.records_settled_in_code,
            "judge_calls_saved": self.judge_calls_saved,
        }


def _chunks(items: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _failures_beyond(base: list[FailedCheck], now: list[FailedCheck]) -> bool:
    seen = {(f.check, f.record_id) for f in base}
    return any((f.check, f.record_id) not in seen for f in now)


def sample_catalogue(contacts: list[ContactRecord], deals: list[OpportunityRecord],
                     labels: list[ContactEnrichment], risks: list[OpportunityRisk]) -> FactCatalogue:
    facts = Facts(contacts=contact_facts(chunk_frame("contacts", [c.model_dump() for c in contacts])),
                  opportunities=opportunity_facts(chunk_frame("opportunities", [d.model_dump() for d in deals])))
    people = pl.DataFrame([{"id": c.id, "company": c.company, "title": c.title} for c in contacts])
    frame = pl.DataFrame([{"id": d.id, "name": d.name, "stage": d.stage, "amount": d.amount,
                           "contact_id": d.contact_id} for d in deals],
                         schema={"id": pl.String, "name": pl.String, "stage": pl.String, "amount": pl.Decimal(20, 2),
                                 "contact_id": pl.String})
    label_frame = pl.DataFrame([{"id": e.id, "seniority": e.seniority, "department": e.department,
                                 "decision_maker": e.decision_maker} for e in labels])
    risk_frame = pl.DataFrame([{"id": r.id, "risk": r.risk} for r in risks])
    catalogue, _shown = build_catalogue(facts, people, frame, label_frame, risk_frame)
    return catalogue.model()


def evaluate(seed: int = 7) -> Evaluation:
    rng = random.Random(seed)
    contacts = list(parse_contacts(str(SAMPLE / "crm_contacts.csv")))
    deals = list(parse_opportunities(str(SAMPLE / "crm_opportunities.csv"), {c.id for c in contacts}))
    truth = ground_truth()
    labels = [ContactEnrichment.model_validate({"id": c.id, "seniority": truth[c.id][0], "department": truth[c.id][1],
                                                "decision_maker": truth[c.id][2], "rationale": "ground truth"})
              for c in contacts]
    risks = [truthful_risk(d) for d in deals]
    result = Evaluation(records=len(contacts) + len(deals))
    result.records_settled_in_code = sum(title_rule(c.title).settled for c in contacts) + sum(
        stage_key(d.stage) not in OPEN_STAGES for d in deals)

    def measure(kind: str, pairs: list[tuple[Any, Any]], check: Callable[[Any, Any], list[FailedCheck]],
                errors: dict[str, Injection]) -> None:
        bases = []
        for records, output in pairs:
            base = check(records, output)
            result.correct_outputs += 1
            result.correct.append(Review(kind, records, output))
            if base:
                result.false_rejections += 1
                result.false_rejection_reasons += [f"{kind}: {f.reason}" for f in base[:3]]
            bases.append(base)
        for name, inject in errors.items():
            tally = ClassResult(name)
            for (records, output), base in zip(pairs, bases, strict=True):
                for _ in range(CASES_PER_CHUNK):
                    case = inject(output, records, rng)
                    if case is None:
                        continue
                    caught = _failures_beyond(base, check(records, case.output))
                    tally.add(case, caught)
                    result.judge_calls_saved += caught
                    if not caught:
                        result.missed_by_rules.append(Review(kind, records, case.output, name))
            result.classes.append(tally)

    contact_pairs = [(records, ContactChunkOutput(enrichments=labels[i * CHUNK:(i + 1) * CHUNK]))
                     for i, records in enumerate(_chunks(contacts))]
    measure("contacts", contact_pairs, check_contacts, CONTACT_ERRORS)
    deal_pairs = [(records, OpportunityChunkOutput(risks=risks[i * CHUNK:(i + 1) * CHUNK]))
                  for i, records in enumerate(_chunks(deals))]
    measure("opportunities", deal_pairs, check_opportunities, OPPORTUNITY_ERRORS)

    catalogue = sample_catalogue(contacts, deals, labels, risks)
    result.catalogue = catalogue
    variants = [correct_insights(catalogue, total, ranking) for total, ranking in INSIGHT_VARIANTS]
    bases = []
    for insights in variants:
        result.correct.append(Review("insights", [], InsightsOutput(insights=insights)))
        base = check_insights(catalogue, InsightsOutput(insights=insights))
        result.correct_outputs += len(insights)
        result.false_rejections += len({f.record_id for f in base})
        result.false_rejection_reasons += [f"insights: {f.reason}" for f in base]
        bases.append(base)
    for name, make in INSIGHT_ERRORS.items():
        tally = ClassResult(name)
        for insights, base in zip(variants, bases, strict=True):
            case = make(insights, catalogue.facts, rng)
            caught = _failures_beyond(base, check_insights(catalogue, case.output))
            tally.add(case, caught)
            result.judge_calls_saved += caught
            if not caught:
                result.missed_by_rules.append(Review("insights", [], case.output, name))
        result.classes.append(tally)
    return result


async def _review(review: Review, number: int, settings: Any, endpoint: Any, catalogue: FactCatalogue | None
                  ) -> bool:
    """What the AI layer says of one output, chosen exactly as the validator chooses (the records the rules cannot
    settle, a sample of ``ai_review_sample`` drawn for the attempt): True if it flags anything."""
    from services.validator import judge
    from shared.llm import LlmCall

    call = LlmCall("gate-eval", f"{review.kind}/{number}", 1, "validator")
    if review.kind == "contacts":
        judged = {r.id for r in review.records if not title_rule(r.title).settled}
        sample = judge.attempt_sample([e for e in review.output.enrichments if e.id in judged],
                                      settings.ai_review_sample, f"eval:{number}")
        prompt = judge.contacts_prompt(review.records, sample)
        ids, instructions = [e.id for e in sample], judge.JUDGE_INSTRUCTIONS
    elif review.kind == "opportunities":
        judged = {r.id for r in review.records
                  if stage_key(r.stage) in OPEN_STAGES and len(risk_allowed(r.stage, r.amount)) > 1}
        sample = judge.attempt_sample([r for r in review.output.risks if r.id in judged], settings.ai_review_sample,
                                      f"eval:{number}")
        prompt = judge.opportunities_prompt(review.records, sample)
        ids, instructions = [r.id for r in sample], judge.JUDGE_INSTRUCTIONS
    else:
        assert catalogue is not None
        ids = [str(n) for n in range(1, len(review.output.insights) + 1)]
        prompt, instructions = judge.insights_prompt(catalogue, review.output), judge.INSIGHTS_JUDGE_INSTRUCTIONS
    problems, _usage = await judge.ask_judge(endpoint, settings, call, review.kind, ids, prompt, instructions)
    return bool(problems)


async def measure_judge(result: Evaluation) -> None:
    """The AI layer on what the rules let through: the injected errors they missed (caught?) and the correct
    outputs (wrongly rejected?), with the provider the settings select."""
    from shared.llm import resolve_endpoint
    from shared.settings import Settings

    settings = Settings()
    endpoint = resolve_endpoint(settings)
    by_class = {c.name: c for c in result.classes}
    for number, review in enumerate(result.missed_by_rules):
        flagged = await _review(review, number, settings, endpoint, result.catalogue)
        tally = by_class[review.error_class or ""]
        tally.judged += 1
        tally.judge_caught += flagged
    wrongly = 0
    for number, review in enumerate(result.correct, start=len(result.missed_by_rules)):
        wrongly += await _review(review, number, settings, endpoint, result.catalogue)
    result.judge = {"provider": settings.resolved_provider(), "model": endpoint.model_id,
                    "missed_by_rules": len(result.missed_by_rules),
                    "caught": sum(c.judge_caught for c in result.classes),
                    "correct_outputs": len(result.correct), "false_rejections": wrongly}


def accuracy(enrichments: str, truth: dict[str, tuple[str, str, bool]]) -> dict[str, Any]:
    """A run's validated contact labels (its enrichments.jsonl text) scored against the ground truth."""
    labels = [json.loads(line) for line in enrichments.splitlines() if '"seniority"' in line]
    scored = [row for row in labels if row["id"] in truth]
    if not scored:
        return {"contacts": 0}
    def share(field_index: int, key: str) -> float:
        return float(sum(row[key] == truth[row["id"]][field_index] for row in scored) / len(scored))
    wrong = [(row["id"], row["seniority"], truth[row["id"]][0]) for row in scored
             if row["seniority"] != truth[row["id"]][0]]
    return {"contacts": len(scored), "seniority": share(0, "seniority"), "department": share(1, "department"),
            "decision_maker": share(2, "decision_maker"), "seniority_errors": wrong[:10]}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def table(result: Evaluation) -> list[str]:
    lines = ["| error class | injected | caught by the rules | rule-checkable | rule-checkable caught |",
             "|---|---|---|---|---|"]
    for c in result.classes:
        share = c.caught / c.cases if c.cases else None
        checkable = c.rule_checkable_caught / c.rule_checkable if c.rule_checkable else None
        lines.append(f"| {c.name} | {c.cases} | {c.caught} ({_pct(share)}) | {c.rule_checkable} | {_pct(checkable)} |")
    t = result.totals()
    if result.judge:
        j = result.judge
        both = t["caught"] + j["caught"]
        lines += ["", f"AI layer ({j['provider']} {j['model']}), on what the rules let through:", "",
                  "| error class | missed by the rules | caught by the AI layer |", "|---|---|---|"]
        lines += [f"| {c.name} | {c.judged} | {c.judge_caught} |" for c in result.classes if c.judged]
        lines += ["", f"both layers: {both} of {t['injected']} ({_pct(both / t['injected'])}); goal "
                  f"{GOALS['all injected caught']}",
                  f"correct outputs the AI layer rejected: {j['false_rejections']} of {j['correct_outputs']} "
                  f"({_pct(j['false_rejections'] / j['correct_outputs'] if j['correct_outputs'] else None)})"]
    lines += [
        "",
        f"all injected errors caught by the rules: {t['caught']} of {t['injected']} ({_pct(t['caught_share'])}); "
        f"goal {GOALS['all injected caught']} with the AI layer",
        f"rule-checkable errors caught: {t['rule_checkable_caught']} of {t['rule_checkable']} "
        f"({_pct(t['rule_checkable_share'])}); goal {GOALS['rule-checkable caught']}",
        f"correct outputs rejected: {t['false_rejections']} of {t['correct_outputs']} "
        f"({_pct(t['false_rejection_share'])}); goal {GOALS['false rejections']}",
        f"records labelled in code (no model call): {t['records_settled_in_code']} of {t['records']}",
        f"AI reviews the rules saved (errors rejected before the judge): {t['judge_calls_saved']}",
    ]
    return lines


@contextlib.contextmanager
def _model_server() -> Iterator[None]:
    """The embedded model server, started for the measurement when the local provider is in use and none runs."""
    from client.devstack import http_ok
    from shared.settings import Settings

    settings = Settings()
    health = f"http://{settings.local_model_host}:{settings.local_model_port}/health"
    if settings.resolved_provider() != "local" or http_ok(health):
        yield
        return
    server = subprocess.Popen([sys.executable, "-m", "deploy.model"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not http_ok(health):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the embedded model server did not start; run `python -m deploy.model` to see why")
            time.sleep(0.5)
        yield
    finally:
        server.terminate()
        server.wait(30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the gate's rules on injected errors (python -m "
                                     "benchmarks.gates).")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--enrichments", type=Path, help="a run's report/enrichments.jsonl to score against the "
                        "ground truth (a run over examples/data/sample)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--judge", action="store_true", help="also measure the AI layer with the provider the "
                        "settings select (TOLLGATE_LLM_*; the embedded model is started if it is not running)")
    args = parser.parse_args(argv)
    result = evaluate(args.seed)
    if args.judge:
        with _model_server():
            asyncio.run(measure_judge(result))
    lines = table(result)
    figures: dict[str, Any] = {"totals": result.totals(), "classes": [c.__dict__ for c in result.classes],
                               "false_rejection_reasons": result.false_rejection_reasons, "judge": result.judge}
    if args.enrichments:
        scored = accuracy(Path(args.enrichments).read_text(), ground_truth())
        figures["accuracy"] = scored
        lines += ["", f"validated labels against the ground truth ({scored['contacts']} contacts): seniority "
                  f"{_pct(scored.get('seniority'))}, department {_pct(scored.get('department'))}, decision maker "
                  f"{_pct(scored.get('decision_maker'))}; goal >= 95% each"]
    print("\n".join(lines))
    for reason in result.false_rejection_reasons[:10]:
        print(f"  false rejection: {reason}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Evaluation", "accuracy", "evaluate"]
