"""The orchestrator worker: runs the workflows and writes the report, on the orchestrator task queue."""

from __future__ import annotations

import asyncio
import logging

from services.orchestrator import outbox
from services.orchestrator.progress import ProgressActivities
from services.orchestrator.report import ReportActivities
from services.orchestrator.workflows import ChunkBatchWorkflow, CrmAnalysisWorkflow
from shared.artifacts import store_from
from shared.codec import KeyringError, keyring_from
from shared.progress import ProgressPublisher
from shared.settings import Settings, get_settings
from shared.temporal import configure_logging, serve


async def run(settings: Settings) -> None:
    publisher = ProgressPublisher(settings.redis_url, buffer_size=settings.progress_buffer_size,
                                  keyring=keyring_from(settings))
    report = ReportActivities(store_from(settings))
    # runs started before the direct-progress patch announce through the local activities; later ones, the outbox
    progress = ProgressActivities(publisher)
    outbox.install(publisher, asyncio.get_running_loop())
    try:
        await serve(
            settings,
            task_queue=settings.orchestrator_queue,
            workflows=[CrmAnalysisWorkflow, ChunkBatchWorkflow],
            activities=[report.write_report, report.record_batch, progress.publish_progress,
                        progress.publish_progress_many],
        )
    finally:
        outbox.uninstall()
        await publisher.close()


def main() -> None:
    configure_logging("orchestrator")
    try:
        asyncio.run(run(get_settings()))
    except KeyringError as error:
        logging.getLogger("tollgate").error("%s", error)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
