"""One trace per run across the CLI and the three worker processes, exported over OTLP to a receiver we run."""

from __future__ import annotations

import asyncio
import csv
import re
import time
from pathlib import Path

import pytest

from client.trace_view import SpanRecord, waterfall
from deploy.scripted_model import ScriptedLlm
from shared.settings import Settings
from shared.telemetry import setup_tracing, tracing_enabled
from tests.harness import ARTICLE, make_stack, tollgate_cli
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.test_progress import events_of

SECRET = "sk-test-secret-0123456789"


def crm_values() -> set[str]:
    values: set[str] = set()
    for name in ("crm_contacts.csv", "crm_opportunities.csv"):
        with (ARTICLE / name).open() as handle:
            for row in csv.DictReader(handle):
                values.update(v for k, v in row.items() if k in ("name", "company", "title", "stage") and v)
    return values


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    return []


async def test_one_trace_across_processes(temporal_address: str, scripted_llm: ScriptedLlm, run_id: str,
                                          tmp_path: Path) -> None:
    receiver = OtlpReceiver().start()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = make_stack(temporal_address, scripted_llm, tmp_path, extra_env=otel, TOLLGATE_LLM_API_KEY=SECRET)
    try:
        scripted_llm.script(run_id, "contacts/chunk-00000", "validator", ["ai_reject", "correct"])
        done = await tollgate_cli(stack.env, "run", str(ARTICLE / "crm_contacts.csv"),
                                  str(ARTICLE / "crm_opportunities.csv"), "--wait", "--run-id", run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        line = next(x for x in done.stdout.splitlines() if x.startswith("trace "))
        trace_id = line.split()[1].rstrip(":")
        assert line.endswith(f"http://127.0.0.1:16686/trace/{trace_id}")

        services = {"tollgate-cli", "tollgate-orchestrator", "tollgate-analyzer", "tollgate-validator"}
        deadline = time.monotonic() + 20
        while {s.service for s in receiver.snapshot()} < services or not any(
                s.name == "RunWorkflow:CrmAnalysisWorkflow" for s in receiver.snapshot()):
            assert time.monotonic() < deadline, {s.service for s in receiver.snapshot()}
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the last batches of every process
        spans = receiver.snapshot()
        events = await events_of(stack.settings.redis_url, run_id)
    finally:
        stack.stop()
        receiver.stop()

    assert {s.trace_id for s in spans} == {trace_id}, "every span of every process belongs to the run's one trace"
    assert {e.trace_id for e in events} == {trace_id}, (
        "progress events carry the run's trace id", [(e.kind, e.step) for e in events if e.trace_id != trace_id])
    assert {s.service for s in spans} == services
    by_id = {s.span_id: s for s in spans}
    [root] = [s for s in spans if s.parent_id is None]
    assert root.name == "tollgate run" and root.service == "tollgate-cli"

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        assert span.parent_id in by_id, f"{span.name} ({span.service}) hangs from a span that never arrived"
        return by_id[span.parent_id]

    def ancestors(span: ReceivedSpan) -> list[str]:
        names = []
        while span.parent_id is not None:
            span = parent(span)
            names.append(span.name)
        return names

    for span in spans:
        assert ancestors(span)[-1:] == ["tollgate run"] or span is root
    llm = [s for s in spans if s.name == "chat scripted"]
    assert llm and all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in llm)
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in llm)
    assert all(s.attributes["gen_ai.request.model"] == "scripted" for s in llm)
    assert all(s.attributes["gen_ai.response.finish_reasons"] == ["stop"] for s in llm)
    enrich = [s for s in llm if s.attributes["tollgate.agent"] == "contact-enricher"]
    assert sorted(s.attributes["tollgate.attempt"] for s in enrich) == [1, 2]  # rejected, then fixed
    for span in enrich:  # the CLI's root, the workflow (a branch of one batch is gated in it), the activity, the call
        assert parent(span).service == "tollgate-analyzer"
        assert ancestors(span) == ["RunActivity:enrich_contact_chunk", "StartActivity:enrich_contact_chunk",
                                   "StartWorkflow:CrmAnalysisWorkflow", "tollgate run"]
    reviews = sorted((s.attributes["tollgate.attempt"], s.attributes["tollgate.gate.passed"]) for s in spans
                     if s.name == "gate.ai" and s.attributes["tollgate.step"] == "contacts/chunk-00000")
    assert reviews == [(1, False), (2, True)]
    rules = [s for s in spans if s.name == "gate.deterministic"]
    assert rules and all(parent(s).name.startswith("RunActivity:validate_") for s in rules)

    leaked = [(s.name, text) for s in spans for text in [*strings(s.attributes), s.name]
              if SECRET in text or any(value in text for value in crm_values())]
    assert leaked == [], "CRM field values or the API key reached span attributes"


async def test_offline_trace_waterfall(temporal_address: str, scripted_llm: ScriptedLlm, run_id: str,
                                       tmp_path: Path) -> None:
    spans_dir = tmp_path / "spans"
    stack = make_stack(temporal_address, scripted_llm, tmp_path, TOLLGATE_TRACE_DIR=str(spans_dir))
    try:
        done = await tollgate_cli(stack.env, "run", str(ARTICLE / "crm_contacts.csv"),
                                  str(ARTICLE / "crm_opportunities.csv"), "--wait", "--run-id", run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 20
        while "write_report" not in "".join(p.read_text() for p in spans_dir.glob("*.jsonl")):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        shown = await tollgate_cli(stack.env, "trace", run_id)
    finally:
        stack.stop()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("tollgate run [tollgate-cli]") and lines[0].rstrip().endswith("|")
    assert lines[1].startswith("  StartWorkflow:CrmAnalysisWorkflow [tollgate-cli]")
    chat = next(i for i, x in enumerate(lines) if x.lstrip().startswith("chat scripted [tollgate-analyzer] attempt 1"))
    run_activity = lines[chat - 1]
    assert run_activity.lstrip().startswith("RunActivity:")
    assert len(lines[chat]) - len(lines[chat].lstrip()) == len(run_activity) - len(run_activity.lstrip()) + 2
    assert re.search(r" \d+\+\d+ tok +\d+\.\d ms \|", lines[chat]), lines[chat]  # tokens, never clipped
    assert all(line.endswith("|") for line in lines[:-1])  # every bar whole, however long the name
    assert lines[-1] == f"run {run_id}: 0 failed span(s)"


def test_the_waterfall_marks_failed_spans_and_a_failed_run() -> None:
    def span(span_id: str, parent: str | None, name: str, failed: bool = False, **attributes: object) -> SpanRecord:
        return SpanRecord("t1", span_id, parent, name, "svc", 0 if parent is None else 10, 100, dict(attributes),
                          failed)

    long_name = "RunActivity:" + "x" * 150
    spans = [span("1", None, "RunWorkflow:CrmAnalysisWorkflow", True, temporalWorkflowID="r1"),
             span("2", "1", long_name, True, **{"tollgate.run_id": "r1"})]
    lines = waterfall(spans, "r1")
    assert lines[0].startswith("✗ RunWorkflow:CrmAnalysisWorkflow") and lines[1].lstrip().startswith("✗ RunActivity:")
    assert all(line.endswith("|") for line in lines[:2])
    assert lines[-1] == "run r1: 2 failed span(s), the run failed"


def test_no_endpoint_means_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "TOLLGATE_TRACE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert setup_tracing(Settings(), "test") is False
    assert tracing_enabled() is False
