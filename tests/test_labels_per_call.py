"""A chunk with more distinct titles than one model call should carry is asked in several bounded calls: every
call within ``labels_per_call``, every contact labelled once, and the gate passes the whole; the validator's
reasons reach only the call that asks about their record."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from deploy.scripted_model import ScriptedLlm
from services.analyzer import agents
from services.analyzer.activities import AnalyzerActivities, feedback_for, per_call
from services.validator.activities import ValidatorActivities
from shared.artifacts import ArtifactStore
from shared.contracts import (
    ChunkTask,
    ContactChunkOutput,
    ContactRecord,
    FailedCheck,
    OpportunityChunkOutput,
    OpportunityRecord,
    QualityFlag,
    ValidationTask,
)
from shared.datasets import chunk_key, write_chunk
from shared.llm import resolve_endpoint
from shared.settings import Settings
from shared.taxonomy import title_rule


def test_records_are_asked_in_calls_of_at_most_the_limit() -> None:
    assert per_call(list(range(40)), 16) == [list(range(16)), list(range(16, 32)), list(range(32, 40))]
    assert per_call([1, 2], 16) == [[1, 2]] and per_call([], 16) == []


def test_a_call_reads_the_reasons_about_its_own_records_only() -> None:
    about_3 = FailedCheck(check="title_rule", record_id="3", reason="contact 3: a manager is mid or senior")
    about_9 = FailedCheck(check="title_rule", record_id="9", reason="contact 9: ...")
    general = FailedCheck(check="schema", reason="the answer was not valid JSON")
    standing_for = {"3": "1"}  # contact 3 shares its title with contact 1, which is asked
    assert feedback_for([about_3, about_9, general], {"1", "2"}, standing_for) == [about_3, general]
    assert feedback_for([about_3, about_9, general], {"9"}, standing_for) == [about_9, general]


async def test_forty_distinct_titles_are_three_calls_and_one_validated_output(tmp_path: Path) -> None:
    llm = ScriptedLlm().start()
    try:
        settings = Settings(llm_provider="openai-compatible", llm_base_url=llm.base_url, llm_model="scripted",
                            artifact_root=str(tmp_path), labels_per_call=16, reuse_validated=False)
        store = ArtifactStore(str(tmp_path))
        records = [ContactRecord(id=f"C{i}", name=f"Person {i}", company="Acme", title=f"Program Manager {i}",
                                 created_date=date(2024, 1, 1)) for i in range(40)]
        chunk = write_chunk(store, chunk_key("run-1", "contacts", 0), [r.model_dump() for r in records])
        endpoint = resolve_endpoint(settings)
        task = ChunkTask(run_id="run-1", step="contacts/chunk-00000", branch="contacts", chunk=chunk, attempt=1,
                         feedback=[], reuse=False)
        output = await ActivityEnvironment().run(AnalyzerActivities(store, settings, endpoint).enrich_contact_chunk,
                                                 task)
        calls = llm.requests_for("run-1", agent="contact-enricher")
        assert [p.count('"id":') for p in (c.prompt for c in calls)] == [16, 16, 8]
        labelled = store.read_model(output.output, ContactChunkOutput).enrichments
        assert sorted(e.id for e in labelled) == sorted(r.id for r in records) and output.schema_error is None
        assert output.usage.calls == 3
        verdict = await ActivityEnvironment().run(
            ValidatorActivities(store, settings, endpoint).validate_contact_chunk,
            ValidationTask(run_id="run-1", step=task.step, attempt=1, output=output, ai_review_sample=0,
                           chunk=chunk))
        assert verdict.passed, verdict.failed_checks
    finally:
        llm.stop()


def _deal(id: str, stage: str, amount: str, flags: list[QualityFlag] | None = None) -> OpportunityRecord:
    return OpportunityRecord(id=id, name=f"Deal {id}", stage=stage, amount=Decimal(amount), contact_id="C1",
                             close_date=None, quality_flags=flags or [])


def test_deals_of_one_kind_are_settled_alike_and_deals_of_another_may_not_be() -> None:
    """The analyzer makes a settled assessment once for each stage spelling and amount band
    (``agents.settled_kind``): two deals of a kind must get the same one but for the id, whatever else differs."""
    stages = ["Closed Won", "closed-won", "Closed Lost", "Prospecting", "qualification", "Proposal", "Negotiation",
              "Discovery call"]
    amounts = [("0.00", "19999.99"), ("20000.00", "99999.99"), ("100000.00", "2500000.50")]
    kinds = {}
    for stage in stages:
        for low, high in amounts:
            one, other = _deal("1", stage, low), _deal("2", stage, high, ["unknown_contact"])
            assert agents.settled_kind(one) == agents.settled_kind(other)
            first, second = agents.settled_assessment(one), agents.settled_assessment(other)
            assert (first is None) == (second is None), (stage, low, high)
            if first is not None and second is not None:
                assert first.model_copy(update={"id": "2"}) == second, (stage, low, high)
            kinds[stage, low] = first.model_dump(exclude={"id"}) if first is not None else None
    # the band is part of the kind: prospecting is settled at 100,000 (high risk only) and asked below it
    assert kinds["Prospecting", "100000.00"] is not None and kinds["Prospecting", "20000.00"] is None
    assert agents.settled_kind(_deal("1", "Prospecting", "5")) != agents.settled_kind(_deal("1", "Prospecting", "1e5"))
    # and so is the stage as written: its display name is in the reason
    assert agents.settled_kind(_deal("1", "Negotiation", "5")) != agents.settled_kind(_deal("1", "negotiation", "5"))


async def test_settled_records_keep_their_own_id_and_flags(tmp_path: Path) -> None:
    """Settled labels are made once a kind: every record still gets its own id and quality flags, and exactly the
    labels the policy writes for it."""
    llm = ScriptedLlm().start()
    try:
        settings = Settings(llm_provider="openai-compatible", llm_base_url=llm.base_url, llm_model="scripted",
                            artifact_root=str(tmp_path), reuse_validated=False)
        store = ArtifactStore(str(tmp_path))
        analyzer = AnalyzerActivities(store, settings, resolve_endpoint(settings))
        deals = [_deal("D1", "Closed Won", "5000"), _deal("D2", "Closed Won", "7000", ["zero_amount"]),
                 _deal("D3", "Negotiation", "100", ["unknown_contact"]), _deal("D4", "Negotiation", "200"),
                 _deal("D5", "Closed Lost", "300000"), _deal("D6", "Prospecting", "5000"),
                 _deal("D7", "Prospecting", "150000", ["zero_amount"])]
        chunk = write_chunk(store, chunk_key("run-s", "opportunities", 0), [d.model_dump() for d in deals])
        output = await ActivityEnvironment().run(analyzer.assess_opportunity_chunk, ChunkTask(
            run_id="run-s", step="opportunities/chunk-00000", branch="opportunities", chunk=chunk, attempt=1,
            feedback=[], reuse=False))
        risks = {r.id: r.model_dump() for r in store.read_model(output.output, OpportunityChunkOutput).risks}
        settled = {d.id: {**assessed.model_dump(), "quality_flags": d.quality_flags}
                   for d in deals if (assessed := agents.settled_assessment(d)) is not None}
        assert sorted(settled) == ["D1", "D2", "D3", "D4", "D5", "D7"]  # a small prospecting deal is asked
        assert {i: risks[i] for i in settled} == settled and sorted(risks) == sorted(d.id for d in deals)
        assert output.usage.calls == 1 and risks["D6"]["quality_flags"] == []
        people = [ContactRecord(id=f"P{i}", name=f"Person {i}", company="Acme", title=title, created_date=None,
                                quality_flags=flags)
                  for i, (title, flags) in enumerate([("CEO", []), ("CEO", ["duplicate_name"]), ("", ["missing_title"]),
                                                      ("Chief Executive Officer", [])])]
        chunk = write_chunk(store, chunk_key("run-s", "contacts", 0), [p.model_dump() for p in people])
        output = await ActivityEnvironment().run(analyzer.enrich_contact_chunk, ChunkTask(
            run_id="run-s", step="contacts/chunk-00000", branch="contacts", chunk=chunk, attempt=1, feedback=[],
            reuse=False))
        labels = store.read_model(output.output, ContactChunkOutput).enrichments
        assert labels == [agents.settled_label(p, title_rule(p.title)) for p in people]
        assert [(label.id, label.quality_flags) for label in labels] == [(p.id, p.quality_flags) for p in people]
    finally:
        llm.stop()
