"""Reuse of validated work across runs, and outputs that cannot change once written.

A rerun over the same export calls no model; a changed chunk is the only one analyzed again. Each execution of an
analysis writes its output once, under a key of its own, and every later reader checks its sha256: a late attempt
can neither overwrite what was validated nor slip in something else.
"""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from services.analyzer.activities import AnalyzerActivities
from services.analyzer.catalogue import BuiltCatalogue, catalogue_digest, deal_entities
from services.analyzer.ingest import ingest
from services.validator.activities import ValidatorActivities
from shared import steps
from shared.artifacts import ArtifactChanged, ArtifactExists, ArtifactStore
from shared.contracts import (
    ArtifactRef,
    ContactChunkOutput,
    ContactEnrichment,
    ContactRecord,
    EnrichmentSummary,
    Fact,
    InsightsContext,
    InsightsTask,
    NamedEntity,
    OpportunityRecord,
    RunResult,
    StepOutput,
    ValidationTask,
)
from shared.datasets import chunk_frame, chunk_key, contacts_with_content, opportunities_with_content, write_chunk
from shared.llm import resolve_endpoint
from shared.settings import Settings
from tests.harness import ARTICLE, Stack
from tests.test_claims import FACTS
from tests.test_ingest import uploaded


def export(path: Path, tag: str, titles: dict[int, str] | None = None) -> Path:
    """Six contacts whose companies carry ``tag``, so no other test's validated work matches them."""
    rows = [f"{i},Person {i},{tag} Co {i % 2},{(titles or {}).get(i, 'Engineering Manager')},2024-01-01"
            for i in range(1, 7)]
    path.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    return path


def deals(path: Path, tag: str) -> Path:
    """The article's deals, named with ``tag``: no other test's validated work matches them."""
    rows = (ARTICLE / "crm_opportunities.csv").read_text().splitlines()
    path.write_text("\n".join([rows[0], *(row.replace(",", f",{tag} ", 1)
                                         for row in rows[1:])]) + "\n")
    return path


async def test_a_rerun_reuses_every_validated_step_and_a_changed_chunk_alone_is_analyzed_again(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    settings = stack.settings.model_copy(update={"contact_chunk_size": 2, "reuse_validated": True})
    first = export(tmp_path / "first.csv", run_id)
    opportunities = deals(tmp_path / "deals.csv", run_id)

    async def run(name: str, contacts: Path, reuse: bool = True) -> RunResult:
        handle = await start_run(client, settings.model_copy(update={"reuse_validated": reuse}), contacts,
                                 opportunities, name)
        return await asyncio.wait_for(handle.result(), 60)

    original = await run(f"{run_id}-a", first)
    assert original.report.reused_steps == 0
    asked = {r.step for r in scripted_llm.requests_for(f"{run_id}-a")}
    assert {"contacts/chunk-00000", "contacts/chunk-00001", "contacts/chunk-00002", "insights"} <= asked

    again = await run(f"{run_id}-b", first)
    assert scripted_llm.requests_for(f"{run_id}-b") == [], "an identical export calls no model, no judge"
    gates = again.report.gates
    assert again.report.reused_steps == gates.gated_steps == original.report.gates.gated_steps
    assert again.report.summary == original.report.summary
    assert [i.insight for i in again.report.insights] == [i.insight for i in original.report.insights]
    assert again.report.usage.calls == 0

    # one contact of the second chunk changes its title: that chunk alone is analyzed (and the insights, whose
    # facts changed with it)
    changed = export(tmp_path / "changed.csv", run_id, {3: "Engineering Director"})
    third = await run(f"{run_id}-c", changed)
    pairs = {(r.step, r.agent) for r in scripted_llm.requests_for(f"{run_id}-c")}
    assert {step for step, agent in pairs if agent == "contact-enricher"} == {"contacts/chunk-00001"}
    assert not any(agent == "opportunity-risk" for _, agent in pairs)
    assert third.report.reused_steps == gates.gated_steps - 2

    # reuse off: the model is asked again
    fresh = await run(f"{run_id}-d", first, reuse=False)
    assert fresh.report.reused_steps == 0 and scripted_llm.requests_for(f"{run_id}-d", "contacts/chunk-00000")


def test_an_attempts_output_is_written_once_and_checked_on_every_read(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key = steps.output_key("r1", "contacts/chunk-00000", 1, 1)
    assert key != steps.output_key("r1", "contacts/chunk-00000", 1, 2), "a retried execution writes beside it"
    ref = store.write_bytes(key, b'{"enrichments": []}', once=True)
    assert ref.sha256 is not None
    with pytest.raises(ArtifactExists, match="written once"):
        store.write_bytes(key, b'{"enrichments": [1]}', once=True)  # a late execution of the same attempt
    assert store.read_bytes(ref) == b'{"enrichments": []}'
    store.write_bytes(key, b'{"enrichments": [2]}')  # forced past write-once (another process, an operator)
    with pytest.raises(ArtifactChanged, match="not the output that was validated"):
        store.read_bytes(ref)


async def test_the_validator_refuses_an_output_that_changed_after_it_was_written(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    chunk = write_chunk(store, chunk_key("r2", "contacts", 0), [{
        "id": "1", "name": "Ann", "company": "Acme", "title": "Engineering Manager", "created_date": None,
        "extra": [], "quality_flags": []}])
    label = ContactEnrichment(id="1", seniority="mid", department="engineering", decision_maker=False,
                              rationale="manager")
    ref = store.write_model(steps.output_key("r2", "contacts/chunk-00000", 1, 1),
                            ContactChunkOutput(enrichments=[label]), once=True)
    tampered = label.model_copy(update={"seniority": "executive", "decision_maker": True})
    store.write_model(ref.key, ContactChunkOutput(enrichments=[tampered]))
    settings = Settings(llm_provider="openai-compatible", llm_base_url="http://127.0.0.1:9/v1", llm_model="x")
    activities = ValidatorActivities(store, settings, resolve_endpoint(settings))
    task = ValidationTask(run_id="r2", step="contacts/chunk-00000", attempt=1, ai_review_sample=0, chunk=chunk,
                          output=StepOutput(step="contacts/chunk-00000", attempt=1, output=ref, records=1))
    with pytest.raises(ArtifactChanged):
        await ActivityEnvironment().run(activities.validate_contact_chunk, task)


def test_the_insights_reuse_key_is_the_same_whether_or_not_the_context_carries_the_digest(tmp_path: Path) -> None:
    """Aggregation hands the insights step the catalogue's digest; a context aggregated before carries none, and
    the step digests the whole catalogue itself. Both give the same facts and the same reuse key, and a change to
    one entity of the catalogue gives another key."""
    store = ArtifactStore(tmp_path)
    facts = [Fact(id="contacts", label="contacts in the export", entity_kind="run", value=Decimal(2), unit="count"),
             Fact(id="won_value", label="value won", entity_kind="run", value=Decimal("10.50"), unit="usd")]
    deals = pl.DataFrame({"id": ["D1", "D2"], "name": ["Renewal 19", None]})
    built = BuiltCatalogue(facts=facts, entities=[NamedEntity(kind="company", name="Acme", refers_to="Acme")],
                           deal_entities=deal_entities(deals))
    summary = EnrichmentSummary(enriched_contacts=0, seniority=[], departments=[], decision_makers=0,
                                contacts_with_quality_flags=0, assessed_opportunities=0, risk_levels=[],
                                high_risk_value=Decimal(0), riskiest_deals=[])
    settings = Settings(llm_provider="openai-compatible", llm_base_url="http://127.0.0.1:9/v1", llm_model="x")
    activities = AnalyzerActivities(store, settings, resolve_endpoint(settings))

    def inputs(name: str, catalogue: bytes, digest: str | None) -> tuple[list[Fact], str]:
        ref = store.write_bytes(f"runs/r/{name}.json", catalogue)
        context = InsightsContext(facts=FACTS, summary=summary, catalogue=ref, prompt_facts=["won_value"],
                                  contact_labels=ref, catalogue_digest=digest)
        task = InsightsTask(run_id="r", step="insights", attempt=1,
                            context=store.write_model(f"runs/r/{name}-context.json", context))
        return activities._insights_inputs(task)

    now = inputs("now", built.to_json(), catalogue_digest(built))
    before = inputs("before", built.to_json(), None)
    assert now == before and [f.id for f in now[0]] == ["won_value"]
    renamed = built.model().model_copy(update={"entities": [NamedEntity(kind="company", name="Acme",
                                                                        refers_to="Acme Corp")]})
    assert inputs("renamed", renamed.model_dump_json().encode(), None)[1] != now[1]


def test_a_chunk_steps_reuse_content_is_its_records_as_their_model_writes_them(tmp_path: Path) -> None:
    """A chunk step digests the JSON array it read rather than dumping its records again: the two must be the same
    bytes, or a new version would miss every output validated before it. Rows with quotes, non-ASCII text, an empty
    date, extra columns, a grouped amount and flags; a Parquet chunk of runs before the JSON lines is dumped."""
    store = ArtifactStore(str(tmp_path / "store"))
    contacts = tmp_path / "contacts.csv"
    contacts.write_text('id,name,company,title,created_date,region\n1,"Zoë ""Z"" Ng",Ünïcode AG,CTO,2024-01-02,EU\n'
                        "2,ann lee,,,,\n3,Ann Lee,Acme,VP Sales,2023-12-31,US\n", encoding="utf-8")
    deals = tmp_path / "deals.csv"
    deals.write_text('id,name,stage,amount,contact_id,close_date,owner\n10,"Deal ""A""",Proposal,"1,234.5",1,'
                     "2024-03-01,x\n11,Big €,Closed Won,0,99,,y\n12,Small,Prospecting,7,3,2024-02-29,\n",
                     encoding="utf-8")
    for keep in (True, False):
        request = uploaded(store, f"content-{keep}", contacts, deals, 2, 2).model_copy(
            update={"keep_extra_columns": keep})
        result = ingest(store, request, lambda rows: None)
        for ref in result.contacts.chunks:
            people, content = contacts_with_content(store, ref)
            assert content == TypeAdapter(list[ContactRecord]).dump_json(people)
        for ref in result.opportunities.chunks:
            deals_read, content = opportunities_with_content(store, ref)
            assert content == TypeAdapter(list[OpportunityRecord]).dump_json(deals_read)
    assert not any(d.extra for d in deals_read) and people[0].quality_flags  # the last run kept no extras
    old = ArtifactRef(key="runs/old/data/contacts/chunk-00000.parquet")
    parquet = io.BytesIO()
    chunk_frame("contacts", [p.model_dump() for p in people]).write_parquet(parquet)
    store.write_bytes(old.key, parquet.getvalue())
    again, content = contacts_with_content(store, old)
    assert again == people and content == TypeAdapter(list[ContactRecord]).dump_json(people)
