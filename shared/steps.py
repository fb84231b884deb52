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
RECORD_BATCH: Final = "record_batch"
PUBLISH_PROGRESS: Final = "publish_progress"
PUBLISH_PROGRESS_MANY: Final = "publish_progress_many"

WORKFLOW: Final = "CrmAnalysisWorkflow"
BATCH_WORKFLOW: Final = "ChunkBatchWorkflow"


def output_key(run_id: str, step: str, attempt: int, execution: int) -> str:
    """Where one execution (Temporal's attempt) of one gate attempt of one step keeps its output. Unique, written
    once: a late or retried execution writes beside it, never over it."""
    return f"runs/{run_id}/steps/{step}/attempt-{attempt}.{execution}.json"


def correction_key(run_id: str, step: str, number: str) -> str:
    """Where a reviewer's corrected output of a step is kept."""
    return f"runs/{run_id}/steps/{step}/correction-{number}.json"
