"""Abuse and concurrency: the same run id started twice at once, two clients starting runs at once over the same
export, a client that disconnects mid-run. No duplicate run, no crossed data."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from client.cli import CliError, start_run
from deploy.scripted_model import ScriptedLlm
from shared.contracts import RunResult
from tests.harness import ARTICLE, ROOT, Stack
from tests.test_endings import write_contacts

DEALS = ARTICLE / "crm_opportunities.csv"


async def test_one_run_id_started_twice_at_once_makes_one_run(client: Client, stack: Stack, run_id: str) -> None:
    starts = await asyncio.gather(*(start_run(client, stack.settings, ARTICLE / "crm_contacts.csv", DEALS, run_id)
                                    for _ in range(2)), return_exceptions=True)
    refused = [s for s in starts if isinstance(s, CliError)]
    handles = [s for s in starts if not isinstance(s, BaseException)]
    assert len(handles) == 1 and len(refused) == 1 and "already exists" in str(refused[0])
    await asyncio.wait_for(handles[0].result(), 60)
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{run_id}"')]
    assert len(runs) == 1


async def test_two_clients_at_once_get_their_own_runs_and_data(client: Client, stack: Stack, run_id: str,
                                                              tmp_path: Path) -> None:
    small, large = write_contacts(tmp_path / "small.csv", 3), write_contacts(tmp_path / "large.csv", 7)
    handles = await asyncio.gather(start_run(client, stack.settings, small, DEALS, f"{run_id}-a"),
                                   start_run(client, stack.settings, large, DEALS, f"{run_id}-b"))
    results: list[RunResult] = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 90)
    assert [r.report.facts.contacts.total_contacts for r in results] == [3, 7]
    assert [r.report.summary.enriched_contacts for r in results] == [3, 7]
    assert results[0].report_location != results[1].report_location


async def test_a_client_that_disconnects_mid_run_leaves_the_run_going(stack: Stack, client: Client,
                                                                      scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:2", "correct"])
    waiting = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "client.cli", "run", str(ARTICLE / "crm_contacts.csv"), str(DEALS),
                           "--wait", "--run-id", run_id], env=stack.env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = asyncio.get_running_loop().time() + 30
    while not scripted_llm.requests_for(run_id):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    waiting.send_signal(signal.SIGKILL)  # the client vanishes without a word
    await asyncio.to_thread(waiting.wait, 10)
    result = await asyncio.wait_for(client.get_workflow_handle(run_id, result_type=RunResult).result(), 60)
    assert result.report.summary.enriched_contacts == 5
