"""The report reads a run's validated labels as aggregation left them: JSON lines now, one JSON document for runs
aggregated before (a run in flight across a deploy), and gives the same file and table rows either way."""

from __future__ import annotations

from pathlib import Path

from services.analyzer.activities import LABEL_SCHEMA, RISK_SCHEMA, read_outputs
from services.orchestrator.report import TABLE_ROWS, ReportActivities
from shared.artifacts import ArtifactStore
from shared.contracts import ContactChunkOutput, ContactEnrichment, OpportunityChunkOutput, OpportunityRisk


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
