"""``tollgate dev`` and ``tollgate demo``: the local stack, and the reference job run on it end to end."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from pathlib import Path

from temporalio.client import WorkflowFailureError

from deploy.devstack import DevStack, DevStackError, run_dev, running
from services.orchestrator.cli import start_run
from services.orchestrator.watch import tally
from shared.contracts import RunProgress, RunResult
from shared.failures import failure_reason
from shared.settings import Settings
from shared.temporal import connect

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample"

# Sized for a small local model on 2 CPU cores (see README, "What the demo measures"): short chunks keep a small
# model on its records, one chunk in flight per branch keeps the single model slot busy without queueing past the
# step timeouts.
DEMO_SETTINGS = {
    "contact_chunk_size": 8,
    "opportunity_chunk_size": 8,
    "max_parallel_chunks": 1,
    "gate_attempts": 3,
    "ai_review_sample": 8,
    "analysis_timeout_seconds": 300.0,
    "validation_timeout_seconds": 240.0,
    "heartbeat_timeout_seconds": 60.0,
}


def run_dev_command(args: argparse.Namespace, settings: Settings) -> int:
    return run_dev(settings, args.analyzers, args.validators)


def slice_csv(source: Path, target: Path, rows: int) -> int:
    """The header and the first ``rows`` data lines of ``source``; returns how many there were in all."""
    lines = source.read_text().splitlines()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines[: rows + 1]) + "\n")
    return len(lines) - 1


async def _run_and_follow(settings: Settings, contacts: Path, opportunities: Path, run_id: str,
                          stack: DevStack) -> RunResult:
    client = await connect(settings)
    handle = await start_run(client, settings, contacts, opportunities, run_id)
    stack.say(f"run {run_id} started; watch it at {settings.temporal_ui_url}/namespaces/"
              f"{settings.temporal_namespace}/workflows/{run_id}")
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        await asyncio.wait([result], timeout=15)
        if not result.done():
            progress = await handle.query("progress", result_type=RunProgress)
            counts = "; ".join(await tally(settings.redis_url, run_id))
            stack.say(f"progress: stage {progress.stage}; {counts}")
    return await result


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Start the stack, run a slice of the sample export, print the report, stop (or keep) the stack."""
    settings = settings.model_copy(update=DEMO_SETTINGS)
    state = Path(".tollgate") / "demo"
    contacts, opportunities = state / "crm_contacts.csv", state / "crm_opportunities.csv"
    all_contacts = slice_csv(SAMPLE / "crm_contacts.csv", contacts, args.contacts)
    all_opportunities = slice_csv(SAMPLE / "crm_opportunities.csv", opportunities, args.opportunities)
    # a request may queue behind others at the single model slot: give the client the step's patience
    stack = DevStack(settings, extra_env={"TOLLGATE_LLM_TIMEOUT_SECONDS": "280"})
    provider = settings.resolved_provider()
    model = settings.local_model if provider == "local" else settings.llm_model or "gpt-4o-mini"
    stack.say(
        f"demo: the first {min(args.contacts, all_contacts)} of {all_contacts} contacts and "
        f"{min(args.opportunities, all_opportunities)} of {all_opportunities} opportunities of the generated sample "
        f"({SAMPLE}), with the {provider} model {model}. The full sample is one command away: "
        f"`tollgate run {SAMPLE / 'crm_contacts.csv'} {SAMPLE / 'crm_opportunities.csv'} --wait` "
        "against `tollgate dev`."
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    code = 0
    try:
        with running(stack):
            stack.say(stack.summary())
            started = time.monotonic()
            run_id = f"demo-{int(time.time())}"
            try:
                result = asyncio.run(_run_and_follow(settings, contacts, opportunities, run_id, stack))
            except WorkflowFailureError as error:
                stack.say(f"run {run_id} failed: {failure_reason(error)}")
                code = 1
            else:
                elapsed = time.monotonic() - started
                markdown = (Path(settings.artifact_root) / result.report_markdown.key).read_text()
                report = result.report
                layers = ", ".join(f"{x.layer} {x.rejections}" for x in report.gates.rejections_by_layer)
                with stack._print:
                    print("\n" + markdown, flush=True)
                stack.say(
                    f"measured: {elapsed:.0f} s for the run; {report.usage.calls} LLM calls, "
                    f"{report.usage.input_tokens} tokens in, {report.usage.output_tokens} out; rejections by layer: "
                    f"{layers}; {report.gates.steps_fixed_by_retry} steps fixed by a retry"
                )
                stack.say(f"report: {Path(settings.artifact_root) / result.report_markdown.key}")
            if args.keep:
                stack.say("the stack stays up for the Temporal UI; Ctrl+C stops it")
                stop.wait()
            stack.say("stopping the stack")
    except DevStackError as error:
        stack.say(f"error: {error}")
        return 1
    return code
