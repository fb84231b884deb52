"""The orchestrator worker: runs the workflows and writes the report, on the orchestrator task queue."""

from __future__ import annotations

import asyncio

from services.orchestrator.report import ReportActivities
from services.orchestrator.workflows import ChunkBatchWorkflow, CrmAnalysisWorkflow
from shared.artifacts import ArtifactStore
from shared.settings import get_settings
from shared.temporal import configure_logging, serve


def main() -> None:
    configure_logging("orchestrator")
    settings = get_settings()
    report = ReportActivities(ArtifactStore(settings.artifact_root))
    asyncio.run(
        serve(
            settings,
            task_queue=settings.orchestrator_queue,
            workflows=[CrmAnalysisWorkflow, ChunkBatchWorkflow],
            activities=[report.write_report],
        )
    )


if __name__ == "__main__":
    main()
