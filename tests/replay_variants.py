"""Workflow code changed the wrong way and the right way, for tests/test_replay.py: one more progress announcement
at the start of a run, unguarded and behind ``workflow.patched``. (Its own module: the workflow sandbox imports it
afresh, so it imports nothing but workflow code.)"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from services.orchestrator.workflows import CrmAnalysisWorkflow, announce
    from shared import steps
    from shared.contracts import RunRequest, RunResult


@workflow.defn(name=steps.WORKFLOW)
class AnnouncesMore(CrmAnalysisWorkflow):
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        await announce(request.run_id, "run_started", "preflight")
        return await super().run(request)


@workflow.defn(name=steps.WORKFLOW)
class AnnouncesMorePatched(CrmAnalysisWorkflow):
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        if workflow.patched("preflight-announcement"):
            await announce(request.run_id, "run_started", "preflight")
        return await super().run(request)
