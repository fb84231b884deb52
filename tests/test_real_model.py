"""The real local model, end to end through Temporal and the gates, on the article's 5 contacts and 4 deals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from client.cli import start_run
from client.devstack import http_ok
from deploy.model import SPECS, cache_dir, ensure_model
from deploy.scripted_model import ScriptedLlm
from shared.contracts import ContactEnrichment, OpportunityRisk
from shared.settings import Settings
from shared.temporal import connect
from tests.harness import ARTICLE, ROOT, Stack, free_port, make_stack


@pytest.fixture(scope="module")
def model_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = Settings()
    ensure_model(SPECS[settings.local_model], cache_dir(settings))  # fails loudly if the weights are missing
    port = free_port()
    log = (tmp_path_factory.mktemp("model") / "model.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "deploy.model"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "TOLLGATE_LOCAL_MODEL_PORT": str(port)})
    try:
        for _ in range(1200):
            if http_ok(f"http://127.0.0.1:{port}/health"):
                break
            assert server.poll() is None, "the model server exited while starting"
            time.sleep(0.1)
        else:
            raise AssertionError("the local model server never became healthy")
        yield port
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture
def local_stack(temporal_address: str, scripted_llm: ScriptedLlm, model_port: int, tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(
        temporal_address, scripted_llm, tmp_path,
        TOLLGATE_LLM_PROVIDER="local", TOLLGATE_LLM_BASE_URL="", TOLLGATE_LOCAL_MODEL_PORT=str(model_port),
        TOLLGATE_LLM_TIMEOUT_SECONDS="280", TOLLGATE_ANALYSIS_TIMEOUT_SECONDS="300",
        TOLLGATE_VALIDATION_TIMEOUT_SECONDS="300", TOLLGATE_HEARTBEAT_TIMEOUT_SECONDS="60",
    )
    yield stack
    stack.stop()


async def test_real_local_model_end_to_end(local_stack: Stack, run_id: str) -> None:
    client = await connect(local_stack.settings)
    settings = local_stack.settings.model_copy(update={"gate_attempts": 4, "ai_review_sample": 5})
    handle = await start_run(client, settings, ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv", run_id)
    result = await asyncio.wait_for(handle.result(), timeout=900)
    report = result.report

    c, o = report.facts.contacts, report.facts.opportunities
    assert (c.total_contacts, c.unique_companies, c.top_company, c.top_company_contacts, c.unique_titles) == (
        5, 3, "Acme Corp", 3, 5)
    assert (o.total_opportunities, o.total_value, o.open_pipeline_value, o.won_value, o.win_rate_by_value_pct) == (
        4, Decimal(155000), Decimal(75000), Decimal(80000), Decimal(100))
    assert o.orphan_opportunities == 0

    lines = (Path(local_stack.settings.artifact_root) / report.enrichments.key).read_text().splitlines()
    contacts = [ContactEnrichment.model_validate_json(x) for x in lines if '"seniority"' in x]
    risks = [OpportunityRisk.model_validate_json(x) for x in lines if '"risk"' in x]
    assert sorted(e.id for e in contacts) == ["1", "2", "3", "4", "5"]  # every real id, once, none invented
    assert sorted(r.id for r in risks) == ["1", "2", "3", "4"]
    by_id = {e.id: e for e in contacts}
    assert by_id["1"].seniority == "executive" and by_id["1"].decision_maker  # the CEO, held to it by the gate
    assert 3 <= len(report.insights) <= 7
    assert report.usage.calls >= 5 and report.usage.output_tokens > 0
