"""Worker versioning: workers of a deployment build take a run once that build is current, and the run's workflow
tasks are recorded as completed by that build, with the auto-upgrade behaviour the workflows declare."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.api.enums.v1 import EventType, VersioningBehavior

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from shared.temporal import connect
from tests.harness import ARTICLE, make_stack, tollgate_cli


async def test_a_current_build_of_a_deployment_serves_runs_as_auto_upgrade(
        temporal_address: str, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    deployment = f"tollgate-{run_id}"
    stack = make_stack(temporal_address, scripted_llm, tmp_path, TOLLGATE_WORKER_DEPLOYMENT=deployment,
                       TOLLGATE_WORKER_BUILD_ID="b1")
    try:
        await asyncio.sleep(2)  # the workers register their build with the server as they poll
        made = await tollgate_cli(stack.env, "set-current-build", "b1")
        assert made.returncode == 0, made.stderr
        client = await connect(stack.settings)
        handle = await start_run(client, stack.settings, ARTICLE / "crm_contacts.csv",
                                 ARTICLE / "crm_opportunities.csv", run_id)
        await asyncio.wait_for(handle.result(), 60)
        history = await handle.fetch_history()
        completed = [e.workflow_task_completed_event_attributes for e in history.events
                     if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        assert completed and all(a.deployment_version.build_id == "b1" for a in completed)
        assert all(a.deployment_version.deployment_name == deployment for a in completed)
        assert {a.versioning_behavior for a in completed} == {VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE}
    finally:
        stack.stop()
