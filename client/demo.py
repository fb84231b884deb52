"""``tollgate dev`` and ``tollgate demo``: the local stack, and the reference job run on it end to end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import signal
import threading
import time
from pathlib import Path

from temporalio.client import WorkflowFailureError

from client.cli import start_run
from client.devstack import DevStack, DevStackError, run_dev, running
from client.watch import tally
from shared.artifacts import store_from
from shared.contracts import RunProgress, RunResult
from shared.failures import failure_reason
from shared.figures import counted
from shared.settings import Settings
from shared.temporal import connect

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "sample"

# The provider's own sizing applies (shared/settings.py, LOCAL_MODEL_SIZING for the embedded model); the demo adds
# only that the whole sample is one chunk per branch: a title or a deal profile is asked of the model once per
# chunk, so one chunk asks each once. Nobody sits at a demo to review: a step whose budget is spent is quarantined
# (the report says what it leaves out), and every run does the work afresh (no reuse) so that it measures it.
DEMO_SETTINGS = {"contact_chunk_size": 200, "opportunity_chunk_size": 200, "gate_attempts": 3,
                 "on_spent": "quarantine", "reuse_validated": False}


def run_dev_command(args: argparse.Namespace, settings: Settings) -> int:
    return run_dev(settings, args.analyzers, args.validators)


def slice_export(folder: Path, target: Path, contacts: int, opportunities: int) -> tuple[int, int, int, int]:
    """A consistent slice of an export: its first ``contacts`` contacts and up to ``opportunities`` of the
    opportunities whose contact is among them (a slice that kept the deals of contacts it dropped would report most
    deals as having an unknown contact). Returns the contacts and opportunities kept, and how many there were."""
    with (folder / "crm_contacts.csv").open(newline="") as handle:
        contact_rows = list(csv.reader(handle))
    with (folder / "crm_opportunities.csv").open(newline="") as handle:
        deal_rows = list(csv.reader(handle))
    kept_contacts = contact_rows[1:contacts + 1]
    ids = {row[contact_rows[0].index("id")] for row in kept_contacts}
    owner = deal_rows[0].index("contact_id")
    whole = len(kept_contacts) == len(contact_rows) - 1  # the whole export: its unknown contacts are a finding
    kept_deals = [row for row in deal_rows[1:] if whole or row[owner] in ids][:opportunities]
    target.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (("crm_contacts.csv", contact_rows[0], kept_contacts),
                               ("crm_opportunities.csv", deal_rows[0], kept_deals)):
        with (target / name).open("w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
    return len(kept_contacts), len(kept_deals), len(contact_rows) - 1, len(deal_rows) - 1


async def _run_and_follow(settings: Settings, contacts: Path, opportunities: Path, run_id: str,
                          stack: DevStack) -> RunResult:
    client = await connect(settings)
    handle = await start_run(client, settings, contacts, opportunities, run_id)
    stack.say(f"run {run_id} started; watch it at {settings.temporal_ui_url}/namespaces/"
              f"{settings.temporal_namespace}/workflows/{run_id}")
    result = asyncio.ensure_future(handle.result())
    started = time.monotonic()
    while not result.done():
        await asyncio.wait([result], timeout=15)
        if not result.done():  # a line every 15 s, with the time so far: a model call can take most of a minute
            progress = await handle.query("progress", result_type=RunProgress)
            counts = "; ".join(await tally(settings.redis_url, run_id))
            stack.say(f"progress at {time.monotonic() - started:.0f} s: stage {progress.stage}; {counts}")
    return await result


def _closing(settings: Settings, result: RunResult, elapsed: float) -> list[str]:
    """The report, then one line of what the run measured (and, on the sample, how right its labels were)."""
    store = store_from(settings)
    report = result.report
    layers = ", ".join(f"{x.layer} {x.rejections}" for x in report.gates.rejections_by_layer)
    lines = [store.read_bytes(result.report_markdown).decode(), (
        f"measured: {elapsed:.0f} s for the run; {counted(report.usage.calls, 'LLM call')}, "
        f"{report.usage.input_tokens:,} tokens in, {report.usage.output_tokens:,} out; rejections by layer: {layers}; "
        f"{counted(report.gates.steps_fixed_by_retry, 'step')} fixed by a retry")]
    with contextlib.suppress(ImportError):  # the gate benchmark ships with the repository, not the wheel
        from benchmarks.gates import accuracy, ground_truth

        scored = accuracy(store.read_bytes(report.enrichments).decode(), ground_truth())
        if scored["contacts"]:
            lines.append(
                f"labels against the sample's hand-labelled ground truth ({scored['contacts']} contacts): seniority "
                f"{scored['seniority']:.0%}, department {scored['department']:.0%}, decision maker "
                f"{scored['decision_maker']:.0%}")
    lines.append(f"report: {result.report_location or store.location(result.report_markdown)}")
    return lines


def _show(lines: list[str]) -> None:
    if lines:
        print("\n" + "\n".join(lines), flush=True)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Start the stack, run a slice of the sample export, print the report, stop (or keep) the stack."""
    settings = settings.model_copy(update=DEMO_SETTINGS)
    state = Path(".tollgate") / "demo"
    contacts, opportunities = state / "crm_contacts.csv", state / "crm_opportunities.csv"
    kept_contacts, kept_deals, all_contacts, all_deals = slice_export(SAMPLE, state, args.contacts,
                                                                      args.opportunities)
    # a request may queue behind others at the single model slot: give the client the step's patience
    stack = DevStack(settings, echo=args.verbose)
    provider = settings.resolved_provider()
    model = settings.local_model if provider == "local" else settings.llm_model or "gpt-4o-mini"
    whole = kept_contacts == all_contacts and kept_deals == all_deals
    stack.say(
        f"demo: {'the whole' if whole else 'a slice of the'} generated sample ({SAMPLE}): {kept_contacts} of "
        f"{all_contacts} contacts and {kept_deals} of {all_deals} opportunities, with the {provider} model {model}; "
        f"service logs in {stack.log_dir.resolve()}/ (--verbose shows them here)"
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    code = 0
    closing: list[str] = []  # the report and the measured line: the last thing on the screen, after shutdown
    try:
        with running(stack):
            stack.say(stack.summary())
            started = time.monotonic()
            run_id = f"demo-{int(time.time())}"
            try:
                result = asyncio.run(_run_and_follow(settings, contacts, opportunities, run_id, stack))
            except WorkflowFailureError as error:
                closing = [f"run {run_id} failed: {failure_reason(error)}"]
                code = 1
            else:
                closing = _closing(settings, result, time.monotonic() - started)
            if args.keep:
                _show(closing)
                closing = []
                stack.say("the stack stays up for the Temporal UI; Ctrl+C stops it")
                stop.wait()
            stack.say("stopping the stack")
    except DevStackError as error:
        stack.say(f"error: {error}")
        return 1
    _show(closing)
    return code
