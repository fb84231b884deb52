"""The validator worker: serves the gate verdicts on the validator task queue."""

from __future__ import annotations

import asyncio

from services.validator.activities import ValidatorActivities
from shared import datasets
from shared.artifacts import store_from
from shared.llm import resolve_endpoint, warm_up
from shared.settings import get_settings
from shared.temporal import configure_logging, serve


def main() -> None:
    configure_logging("validator")
    settings = get_settings()
    activities = ValidatorActivities(store_from(settings), settings, resolve_endpoint(settings))
    warm_up(activities.endpoint, settings)  # the first run does not pay for the imports and first calls
    datasets.warm_up()
    asyncio.run(
        serve(
            settings,
            task_queue=settings.validator_queue,
            announce_attempts=True,
            activities=[
                activities.validate_contact_chunk,
                activities.validate_opportunity_chunk,
                activities.validate_insights,
            ],
        )
    )


if __name__ == "__main__":
    main()
