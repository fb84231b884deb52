"""Activity names: the orchestrator calls them by name, so no service imports another."""

from typing import Final

INGEST: Final = "ingest_exports"
ENRICH_CONTACTS: Final = "enrich_contact_chunk"
ASSESS_OPPORTUNITIES: Final = "assess_opportunity_chunk"
AGGREGATE: Final = "aggregate_enrichments"
WRITE_INSIGHTS: Final = "write_insights"
VALIDATE_CONTACTS: Final = "validate_contact_chunk"
VALIDATE_OPPORTUNITIES: Final = "validate_opportunity_chunk"
VALIDATE_INSIGHTS: Final = "validate_insights"
WRITE_REPORT: Final = "write_report"
PUBLISH_PROGRESS: Final = "publish_progress"

WORKFLOW: Final = "CrmAnalysisWorkflow"
BATCH_WORKFLOW: Final = "ChunkBatchWorkflow"


def output_key(run_id: str, step: str, attempt: int) -> str:
    """Where one attempt of one step keeps its output: fixed, so a re-executed attempt overwrites itself."""
    return f"runs/{run_id}/steps/{step}/attempt-{attempt}.json"
