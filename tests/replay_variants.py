"""Workflow code changed the wrong way and the right way, for tests/test_replay.py: a pause (a durable timer, one
more command) at the start of a run, unguarded and behind ``workflow.patched``; and one more progress announcement,
which is no command at all (services/orchestrator/outbox) and needs no guard."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from services.orchestrator.workflows import CrmAnalysisWorkflow, announce
    from shared import steps
    from shared.contracts import RunRequest, RunResult


@workflow.defn(name=steps.WORKFLOW)
class PausesFirst(CrmAnalysisWorkflow):
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        await asyncio.sleep(1)
        return await super().run(request)


@workflow.defn(name=steps.WORKFLOW)
class PausesFirstPatched(CrmAnalysisWorkflow):
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        if workflow.patched("preflight-pause"):
            await asyncio.sleep(1)
        return await super().run(request)


@workflow.defn(name=steps.WORKFLOW)
class AnnouncesMore(CrmAnalysisWorkflow):
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        result = await super().run(request)
        await announce(request.run_id, "run_completed", "again")
        return result
