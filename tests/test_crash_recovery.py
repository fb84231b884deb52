"""Durability: a worker killed with SIGKILL mid-run loses only its in-flight step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from shared.temporal import connect
from tests.harness import ARTICLE, Stack, make_stack

CHUNKS = 12


@pytest.fixture
def own_stack(temporal_address: str, scripted_llm: ScriptedLlm, tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(temporal_address, scripted_llm, tmp_path)
    yield stack
    stack.stop()


async def test_killed_analyzer_resumes_without_redoing_completed_steps(
        own_stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    rows = [f"{i},Person {i},Company {i % 5},Engineering Manager,2024-01-01" for i in range(1, CHUNKS * 4 + 1)]
    contacts.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    for index in range(CHUNKS):
        scripted_llm.script(run_id, f"contacts/chunk-{index:05d}", "contact-enricher", ["slow:0.6"])

    client = await connect(own_stack.settings)
    settings = own_stack.settings.model_copy(update={"contact_chunk_size": 4, "max_parallel_chunks": 2})
    handle = await start_run(client, settings, contacts, ARTICLE / "crm_opportunities.csv", run_id)

    deadline = time.monotonic() + 60
    while len(scripted_llm.requests_for(run_id, agent="validator")) < 4:
        assert time.monotonic() < deadline, "the run never got going"
        await asyncio.sleep(0.05)
    own_stack.kill("analyzer")
    # Every step the validator was asked about had its analysis completed and checkpointed before the kill.
    completed = {r.step for r in scripted_llm.requests_for(run_id, agent="validator")}
    await asyncio.sleep(1)
    own_stack.start("analyzer")

    result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.report.summary.enriched_contacts == CHUNKS * 4
    assert sum(step.startswith("contacts/") for step in completed) >= 3
    for step in completed:
        analyses_of_step = [r for r in scripted_llm.requests_for(run_id, step) if r.agent != "validator"]
        assert len(analyses_of_step) == 1, step
    analyses = scripted_llm.requests_for(run_id, agent="contact-enricher")
    # at most the two in-flight chunks are asked again
    assert CHUNKS <= len(analyses) <= CHUNKS + 2
    assert len(scripted_llm.requests_for(run_id, "insights", "insights")) == 1
