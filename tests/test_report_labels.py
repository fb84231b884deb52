"""The report reads a run's validated labels as aggregation left them: JSON lines now, one JSON document for runs
aggregated before (a run in flight across a deploy), and gives the same file and table rows either way."""

from __future__ import annotations

from pathlib import Path

from services.analyzer.activities import LABEL_SCHEMA, RISK_SCHEMA, AnalyzerActivities, read_outputs
from services.analyzer.ingest import ingest
from services.orchestrator.report import TABLE_ROWS, ReportActivities
from shared.artifacts import ArtifactStore
from shared.contracts import (
    AggregateRequest,
    ContactChunkOutput,
    ContactEnrichment,
    InsightsContext,
    OpportunityChunkOutput,
    OpportunityRisk,
)
from shared.llm import resolve_endpoint
from shared.settings import Settings
from tests.harness import ARTICLE
from tests.test_ingest import uploaded


def _contacts(n: int) -> list[ContactEnrichment]:
    return [ContactEnrichment(id=f"C{i}", seniority="mid", department="sales", decision_maker=False,
                              rationale="no rank word", quality_flags=["missing_company"] if i % 7 == 0 else [])
            for i in range(n)]


def test_json_lines_and_an_older_document_give_the_same_lines_and_head(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    labels = _contacts(TABLE_ROWS + 30)
    lines = store.write_bytes("runs/r/contact-labels.jsonl", "".join(f"{e.model_dump_json()}\n" for e in labels)
                              .encode())
    document = store.write_model("runs/r/contact-labels.json", ContactChunkOutput(enrichments=labels))
    report = ReportActivities(store)
    new_data, new_head = report._labels(lines, ContactEnrichment)
    old_data, old_head = report._labels(document, ContactEnrichment)
    assert new_data == old_data and new_data.count(b"\n") == len(labels)
    assert new_head == old_head == labels[:TABLE_ROWS]


def test_a_short_branch_is_read_whole_and_an_empty_one_gives_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    risks = [OpportunityRisk(id="O1", risk="high", reason="large early deal", next_action="qualify the budget")]
    few = store.write_bytes("runs/r/risks.jsonl", "".join(f"{r.model_dump_json()}\n" for r in risks).encode())
    none = store.write_model("runs/r/risks.json", OpportunityChunkOutput(risks=[]))
    report = ReportActivities(store)
    assert report._labels(few, OpportunityRisk)[1] == risks
    assert report._labels(none, OpportunityRisk) == (b"", [])


def test_aggregation_reads_every_output_in_chunk_order_empty_ones_included(tmp_path: Path) -> None:
    """The validated outputs as one frame, in chunk order, each row with its place: an output with no label adds
    no row, a label's null-free fields come through as the model wrote them, and no output gives an empty frame."""
    store = ArtifactStore(str(tmp_path))
    labels = _contacts(5)
    refs = [store.write_model(f"runs/r/out-{n}.json", ContactChunkOutput(enrichments=part), once=True)
            for n, part in enumerate((labels[:2], [], labels[2:]))]
    frame = read_outputs(store, refs, "enrichments", LABEL_SCHEMA)
    assert frame.get_column("row").to_list() == [0, 1, 2, 3, 4]
    assert frame.drop("row").to_dicts() == [e.model_dump() for e in labels]
    risks = [OpportunityRisk(id="O1", risk="high", reason="stalled", next_action="call", quality_flags=[])]
    risk_ref = store.write_model("runs/r/risks-0.json", OpportunityChunkOutput(risks=risks), once=True)
    assert read_outputs(store, [risk_ref], "risks", RISK_SCHEMA).drop("row").to_dicts() == [r.model_dump()
                                                                                         for r in risks]
    assert read_outputs(store, [], "enrichments", LABEL_SCHEMA).is_empty()


def test_aggregation_counts_labels_only_for_ids_the_export_has(tmp_path: Path) -> None:
    """A label for an id the export lacks (a reviewer's correction can hold one; a gate never passes one) counts
    nowhere and is counted as left out; the same label for an id the export has is counted."""
    store = ArtifactStore(str(tmp_path))
    export = uploaded(store, "r", ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv", 2, 2)
    ingested = ingest(store, export, lambda _: None)

    def aggregate(contact_id: str, deal_id: str) -> InsightsContext:
        people = _contacts(5)  # C0 to C4; the article's contacts are 1 to 5
        labels = [p.model_copy(update={"id": str(n)}) for n, p in enumerate(people, start=1)]
        labels[-1] = labels[-1].model_copy(update={"id": contact_id})
        risks = [OpportunityRisk(id=str(n), risk="high", reason="stalled", next_action="call") for n in (1, 2, 3)]
        risks.append(OpportunityRisk(id=deal_id, risk="low", reason="signed", next_action=""))
        request = AggregateRequest(
            run_id="r", facts=ingested.facts, contacts=ingested.contacts, opportunities=ingested.opportunities,
            contact_outputs=[store.write_model(f"runs/r/c-{contact_id}.json", ContactChunkOutput(enrichments=labels))],
            opportunity_outputs=[store.write_model(f"runs/r/o-{deal_id}.json", OpportunityChunkOutput(risks=risks))])
        activities = AnalyzerActivities(store, Settings(), resolve_endpoint(Settings()))
        return store.read_model(activities.aggregate_enrichments(request), InsightsContext)

    kept = aggregate("5", "4").summary
    assert (kept.enriched_contacts, kept.assessed_opportunities, kept.unknown_ids_left_out) == (5, 4, 0)
    assert kept.contacts_with_quality_flags == 1  # the first label carries a flag
    assert [deal.id for deal in kept.riskiest_deals] == ["1", "3", "2"]  # the high ones, the largest first
    left_out = aggregate("C99", "O99").summary
    assert (left_out.enriched_contacts, left_out.assessed_opportunities, left_out.unknown_ids_left_out) == (4, 3, 2)
    assert sum(item.count for item in left_out.risk_levels) == 3
