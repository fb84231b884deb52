"""The report reads a run's validated labels as aggregation left them: JSON lines now, one JSON document for runs
aggregated before (a run in flight across a deploy), and gives the same file and table rows either way."""

from __future__ import annotations

from pathlib import Path

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
