"""The analyzer worker: serves ingest, the analysis agents and aggregation on the analyzer task queue."""

from __future__ import annotations

import asyncio

from services.analyzer.activities import AnalyzerActivities
from shared import datasets
from shared.artifacts import store_from
from shared.llm import resolve_endpoint, warm_up
from shared.settings import get_settings
from shared.temporal import configure_logging, serve


def main() -> None:
    configure_logging("analyzer")
    settings = get_settings()
    activities = AnalyzerActivities(store_from(settings), settings, resolve_endpoint(settings))
    warm_up(activities.endpoint, settings)  # the first run does not pay for the imports and first calls
    datasets.warm_up()
    asyncio.run(
        serve(
            settings,
            task_queue=settings.analyzer_queue,
            announce_attempts=True,
            activities=[
                activities.ingest_exports,
                activities.enrich_contact_chunk,
                activities.assess_opportunity_chunk,
                activities.aggregate_enrichments,
                activities.write_insights,
            ],
        )
    )


if __name__ == "__main__":
    main()
