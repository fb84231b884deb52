"""``tollgate``: start a run, follow it, fetch its report.

Entry points flush and leave with ``os._exit``: a short-lived process holding a temporalio client can crash at
interpreter exit (temporalio/sdk-python#300), which would turn a good run's exit status into a bad one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from shared import steps
from shared.artifacts import store_from
from shared.contracts import (
    RUN_ID_PATTERN,
    Report,
    ReviewAction,
    RunOptions,
    RunProgress,
    RunRequest,
    RunResult,
    StepPolicy,
)
from shared.datasets import CONTACT_COLUMNS, DELIMITERS, OPPORTUNITY_COLUMNS
from shared.failures import failure_reason, run_ending
from shared.figures import count, counted, money, percent
from shared.settings import Settings, get_settings
from shared.telemetry import current_trace_id, flush_tracing, setup_tracing, tracer
from shared.temporal import connect

DEMO_CONTACTS = 200  # the whole generated sample
DEMO_OPPORTUNITIES = 120
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNNING = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def run_options(settings: Settings) -> RunOptions:
    """The per-run configuration, taken from the settings when the run starts."""
    analysis = timedelta(seconds=settings.analysis_timeout_seconds)
    validation = timedelta(seconds=settings.validation_timeout_seconds)
    ingest = timedelta(seconds=settings.ingest_timeout_seconds)
    heartbeat = timedelta(seconds=settings.heartbeat_timeout_seconds)
    return RunOptions(
        analyzer_queue=settings.analyzer_queue,
        validator_queue=settings.validator_queue,
        orchestrator_queue=settings.orchestrator_queue,
        contact_chunk_size=settings.contact_chunk_size,
        opportunity_chunk_size=settings.opportunity_chunk_size,
        chunks_per_batch=settings.chunks_per_batch,
        max_parallel_chunks=settings.max_parallel_chunks,
        gate_attempts=settings.gate_attempts,
        ai_review_sample=settings.ai_review_sample,
        token_budget=settings.run_token_budget,
        decimal_separator=settings.amount_decimal_separator,
        on_spent=settings.on_spent,
        review_timeout=timedelta(seconds=settings.review_timeout_seconds),
        reuse=settings.reuse_validated,
        keep_extra_columns=settings.keep_extra_columns,
        sequential_branches=settings.sequential_branches,
        ingest=StepPolicy(start_to_close=ingest, schedule_to_close=ingest * 2, heartbeat=heartbeat * 3, max_attempts=3),
        analysis=StepPolicy(start_to_close=analysis, schedule_to_close=analysis * 5, heartbeat=heartbeat,
                            max_attempts=settings.activity_max_attempts),
        validation=StepPolicy(start_to_close=validation, schedule_to_close=validation * 5, heartbeat=heartbeat,
                              max_attempts=settings.activity_max_attempts),
    )


async def _client(settings: Settings) -> Client:
    from shared.codec import KeyringError

    try:
        return await connect(settings, wait=0)
    except KeyringError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except RuntimeError as error:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address} ({str(error).split(':', 1)[0].lower()}); is the "
            "stack running? `tollgate dev` starts one, TOLLGATE_TEMPORAL_ADDRESS points elsewhere"
        ) from None


def ui_link(settings: Settings, run_id: str) -> str:
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{run_id}"


def report_location(result: RunResult, settings: Settings) -> str:
    """The report's absolute location as the workers wrote it (a run from before it was recorded: resolved here)."""
    return result.report_location or store_from(settings).location(result.report_markdown)


def _coverage(report: Report) -> str:
    return ", ".join(f"{x.branch} {x.covered:,}/{x.rows:,} ({percent(x.share_pct)})" for x in report.coverage)


def summary_lines(report: Report, result: RunResult, settings: Settings) -> list[str]:
    c, o, s, g = report.facts.contacts, report.facts.opportunities, report.summary, report.gates
    layers = ", ".join(f"{x.layer} {x.rejections}" for x in g.rejections_by_layer)
    lines = [
        f"contacts {c.total_contacts:,} at {c.unique_companies:,} companies (top: {c.top_company}, "
        f"{c.top_company_contacts:,}); opportunities {o.total_opportunities:,}, open pipeline "
        f"{money(o.open_pipeline_value)}, won {money(o.won_value)}, win rate {percent(o.win_rate_by_value_pct)} by "
        f"value, {percent(o.win_rate_by_count_pct)} by count; unknown contact {o.orphan_opportunities:,}",
        f"enriched {counted(s.enriched_contacts, 'contact')} ({counted(s.decision_makers, 'decision maker')}), "
        f"assessed {counted(s.assessed_opportunities, 'opportunity', 'opportunities')} "
        f"({', '.join(f'{x.key} {x.count}' for x in s.risk_levels)})",
        f"gates: {counted(g.gated_steps, 'step')}, {counted(g.attempts, 'attempt')}, rejections by layer: {layers}, "
        f"{g.steps_fixed_by_retry} fixed by a retry",
        f"LLM: {counted(report.usage.calls, 'call')}, {counted(report.usage.input_tokens, 'token')} in, "
        f"{count(report.usage.output_tokens)} out, ${report.usage.cost_usd:.4f}",
        *([f"coverage: {_coverage(report)}; {counted(report.quarantined_total, 'step')} quarantined: "
           f"{', '.join(q.step for q in report.quarantined)}"] if report.quarantined_total else []),
        *[f"reviewed: {r.step} {r.outcome} ({'; '.join(f'{x.action} by {x.reviewer}' for x in r.reviews)})"
          for r in report.reviewed],
        *([f"reused: {counted(report.reused_steps, 'step')} validated in an earlier run (no model call)"]
          if report.reused_steps else []),
        "insights:" if report.insights else f"insights: none; {report.insights_missing}",
        *[f"  {n}. {i.insight.title}: {i.insight.text}" for n, i in enumerate(report.insights, 1)],
        f"report: {report_location(result, settings)}",
    ]
    return lines


def _emit(lines: Sequence[str]) -> None:
    print("\n".join(lines), flush=True)


async def _live_result(handle: WorkflowHandle[object, RunResult], settings: Settings) -> RunResult:
    """The run's result, with a live line of its progress meanwhile (chunks, rejections, failed attempts)."""
    from rich.console import Console

    from client.watch import tally

    waiting = asyncio.ensure_future(handle.result())
    with Console(stderr=True).status(f"run {handle.id} is starting") as line:
        while not waiting.done():
            await asyncio.wait([waiting], timeout=2)
            counts = "; ".join(await tally(settings.redis_url, handle.id))
            if counts:
                line.update(f"run {handle.id}: {counts}")
    return await waiting


async def _await_result(handle: WorkflowHandle[object, RunResult], settings: Settings, as_json: bool) -> None:
    try:
        live = sys.stderr.isatty() and not as_json
        result = await (_live_result(handle, settings) if live else handle.result())
    except WorkflowFailureError as error:
        raise CliError(f"run {handle.id} {run_ending(error)}") from None
    if as_json:
        print(result.report.model_dump_json(indent=2), flush=True)
    else:
        _emit(summary_lines(result.report, result, settings))




def _header(path: Path) -> set[str]:
    with path.open("rb") as handle:
        first = handle.readline(64 * 1024).decode("utf-8", errors="replace").lstrip("\ufeff")
    return {name.strip().strip('"') for name in re.split(f"[{''.join(DELIMITERS)}]", first.strip())}


def check_exports(contacts: Path, opportunities: Path) -> None:
    """Refuse, before a run starts, what cannot be the two exports: a missing file, a directory, or the two files
    given the wrong way round (recognised by their headers). Everything else is the ingest step's to judge."""
    for path in (contacts, opportunities):
        if path.is_dir():
            raise CliError(f"{path} is a directory; give the CSV file itself", EXIT_USAGE)
        if not path.is_file():
            raise CliError(f"{path}: file not found", EXIT_USAGE)
    contact_header, deal_header = _header(contacts), _header(opportunities)
    looks_like_deals = {"stage", "amount"} <= contact_header and "title" not in contact_header
    looks_like_contacts = "title" in deal_header and not {"stage", "amount"} & deal_header
    if looks_like_deals and looks_like_contacts:
        raise CliError(f"the two files look swapped: {contacts.name} has the opportunities' columns and "
                       f"{opportunities.name} the contacts'; the contacts export comes first", EXIT_USAGE)


def check_run_id(run_id: str) -> str:
    """A run id becomes part of workflow ids and store keys: letters, digits, '.', '_', '-', at most 100."""
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise CliError(f"run id {run_id[:120]!r} is not allowed: use 1 to 100 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit (no '/', no spaces)", EXIT_USAGE)
    return run_id


def run_request(settings: Settings, contacts: Path, opportunities: Path, run_id: str) -> RunRequest:
    """The workflow's input: the two exports uploaded to the artifact store (by content: an identical export is
    stored once), so workers read the store, never the client's disk."""
    check_exports(contacts, opportunities)
    store = store_from(settings)
    return RunRequest(run_id=check_run_id(run_id), contacts=store.upload(contacts), contacts_name=contacts.name,
                      opportunities=store.upload(opportunities), opportunities_name=opportunities.name,
                      options=run_options(settings))


async def start_run(client: Client, settings: Settings, contacts: Path, opportunities: Path,
                    run_id: str) -> WorkflowHandle[object, RunResult]:
    request = await asyncio.to_thread(run_request, settings, contacts, opportunities, run_id)
    try:
        return await client.start_workflow(
            steps.WORKFLOW, request, id=run_id, task_queue=settings.orchestrator_queue, result_type=RunResult,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"run {run_id} already exists; follow it with `tollgate status {run_id}` or fetch its report with "
            f"`tollgate result {run_id}`, or start a new run under another --run-id",
            EXIT_USAGE,
        ) from None


async def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    check_exports(Path(args.contacts), Path(args.opportunities))  # before anything connects anywhere
    if args.on_spent or args.no_reuse:
        settings = settings.model_copy(update={"on_spent": args.on_spent or settings.on_spent,
                                               "reuse_validated": settings.reuse_validated and not args.no_reuse})
    run_id = check_run_id(args.run_id) if args.run_id else f"crm-{uuid.uuid4().hex[:12]}"
    client = await _client(settings)
    # The root of the run's trace: Temporal's interceptor hangs the workflow and every step below it.
    with tracer().start_as_current_span("tollgate run", attributes={"tollgate.run_id": run_id}):
        handle = await start_run(client, settings, Path(args.contacts), Path(args.opportunities), run_id)
        trace_id = current_trace_id()
    out = sys.stderr if args.json else sys.stdout
    print(f"run {run_id} started\nTemporal UI: {ui_link(settings, run_id)}", file=out, flush=True)
    if trace_id:
        link = f": {settings.jaeger_url}/trace/{trace_id}" if settings.jaeger_link_configured() else ""
        print(f"trace {trace_id}{link}", file=out, flush=True)
    try:
        if args.follow:
            await _follow(client, settings, run_id)
        if args.wait:
            await _await_result(handle, settings, args.json)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\nstopped waiting; run {run_id} goes on. Follow it with `tollgate watch {run_id}`, fetch its report "
              f"with `tollgate result {run_id} --wait`, or stop it with `tollgate cancel {run_id}`",
              file=sys.stderr, flush=True)
        raise CliError("interrupted", EXIT_INTERRUPTED) from None


async def _follow(client: Client, settings: Settings, run_id: str) -> None:
    from client.watch import watch

    async def run_status() -> str:
        return (await _describe(client, run_id))[1]

    link = settings.jaeger_url if settings.jaeger_link_configured() else None
    if await watch(settings.redis_url, run_id, jaeger_url=link, run_status=run_status) != 0:
        raise CliError(f"run {run_id} did not complete: {await _ending(client, run_id)}")


async def _ending(client: Client, run_id: str) -> str:
    """How an ended run ended, in one line."""
    handle, status = await _describe(client, run_id)
    if status == "completed":
        return "completed"
    try:
        await handle.result()
    except WorkflowFailureError as error:
        return run_ending(error)
    return status


async def cmd_watch(args: argparse.Namespace, settings: Settings) -> None:
    client = await _client(settings)
    await _describe(client, args.run_id)  # an unknown run is an error, not an endless wait
    await _follow(client, settings, args.run_id)


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> None:
    client = await _client(settings)
    handle, status = await _describe(client, args.run_id)
    if status != "running":
        raise CliError(f"run {args.run_id} is not running (it is {status.replace('_', ' ')})", EXIT_USAGE)
    await handle.cancel()
    _emit([f"run {args.run_id}: cancellation requested; steps in flight are cancelled and the run ends as "
           f"cancelled (`tollgate status {args.run_id}` shows it)"])


async def _describe(client: Client, run_id: str) -> tuple[WorkflowHandle[object, RunResult], str]:
    handle: WorkflowHandle[object, RunResult] = client.get_workflow_handle(run_id, result_type=RunResult)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no run {run_id}; `tollgate run` starts one", EXIT_USAGE) from None
        raise
    status = description.status
    name = WorkflowExecutionStatus.Name(status.value) if status else "UNKNOWN"  # type: ignore[arg-type]
    return handle, name.removeprefix("WORKFLOW_EXECUTION_STATUS_").lower()


async def cmd_status(args: argparse.Namespace, settings: Settings) -> None:
    client = await _client(settings)
    handle, status = await _describe(client, args.run_id)
    lines = [f"run {args.run_id}: {status}", f"Temporal UI: {ui_link(settings, args.run_id)}"]
    if status == "running":
        progress = await handle.query("progress", result_type=RunProgress)
        lines.append(f"stage {progress.stage}")
    from client.watch import tally

    lines += await tally(settings.redis_url, args.run_id)  # chunk-level counts, from the progress events
    if status == "running":
        from client.review import waiting_steps

        for pending in await waiting_steps(client, args.run_id):
            lines.append(f"waiting for a review: {pending.step} (since {pending.since:%H:%M:%S} UTC; "
                         f"tollgate review {args.run_id} {pending.step})")
    _emit(lines)
    if status == "failed":
        try:
            await handle.result()
        except WorkflowFailureError as error:
            raise CliError(f"run {args.run_id} failed: {failure_reason(error)}") from None


async def cmd_result(args: argparse.Namespace, settings: Settings) -> None:
    client = await _client(settings)
    handle, status = await _describe(client, args.run_id)
    if status == "running" and not args.wait:
        raise CliError(f"run {args.run_id} is still running; add --wait to wait for it", EXIT_RUNNING)
    await _await_result(handle, settings, args.json)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tollgate", description="Durable CRM analysis with validation gates.")
    sub = root.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="start a run over a contacts and an opportunities CSV export",
        description="Start a run over two CSV exports (UTF-8, a header row): first the contacts, with columns "
        f"{', '.join(CONTACT_COLUMNS)}; then the opportunities, with columns {', '.join(OPPORTUNITY_COLUMNS)}. "
        "Extra columns are dropped at ingest unless TOLLGATE_KEEP_EXTRA_COLUMNS=true. Example: tollgate run "
        "examples/data/article/crm_contacts.csv examples/data/article/crm_opportunities.csv --wait")
    run.add_argument("contacts", help=f"the contacts export (columns: {', '.join(CONTACT_COLUMNS)})")
    run.add_argument("opportunities", help=f"the opportunities export (columns: {', '.join(OPPORTUNITY_COLUMNS)})")
    run.add_argument("--wait", action="store_true", help="wait for the report and print its summary")
    run.add_argument("--json", action="store_true", help="with --wait: print the whole report as JSON on stdout")
    run.add_argument("--run-id", help="the run's id (default: a new one)")
    run.add_argument("--follow", action="store_true", help="follow the run's progress events until it ends")
    run.add_argument("--on-spent", choices=("review", "quarantine", "fail"),
                     help="when a step's gate budget is spent: wait for a reviewer (`tollgate review`), leave the "
                     "step's rows out of the report, or fail the run (default: TOLLGATE_ON_SPENT, else review)")
    run.add_argument("--no-reuse", action="store_true", help="analyze every chunk afresh, even one whose validated "
                     "output an earlier run over the same rows left (default: reuse it, with no model call)")
    watch = sub.add_parser("watch", help="replay a run's progress from the start and follow it until it ends")
    watch.add_argument("run_id")
    cancel = sub.add_parser("cancel", help="cancel a running run (it ends as cancelled, with a run_cancelled event)")
    cancel.add_argument("run_id")
    review = sub.add_parser(
        "review", help="list the steps waiting for a reviewer, show one, or decide on it",
        description="A step whose gate budget is spent waits for a decision when the run's policy is review "
        "(--on-spent review, the default). Without arguments: every waiting step across runs. With RUN: that run's. "
        "With RUN STEP: the step's records, last output and the validator's reasons side by side; add one decision.")
    review.add_argument("run_id", nargs="?", help="the run")
    review.add_argument("step", nargs="?", help="the waiting step, e.g. contacts/chunk-00003 or insights")
    review.add_argument("--approve", action="store_true", help="accept the last output as it is (marked "
                        "human-approved in the report)")
    review.add_argument("--correct", metavar="FILE", help="accept corrected records (JSON or CSV) once they pass "
                        "the step's deterministic rules; refused with the reasons otherwise")
    review.add_argument("--retry", action="store_true", help="give the step a new budget; --note is added to the "
                        "feedback the model reads")
    review.add_argument("--quarantine", action="store_true", help="leave the step's rows out of the run")
    review.add_argument("--abort", action="store_true", help="fail the run, naming --note as the reason")
    review.add_argument("--note", help="why (required with --retry and --abort)")
    review.add_argument("--reviewer", help="who decides (default: TOLLGATE_REVIEWER, else your login name)")
    review.add_argument("--export", metavar="FILE", help="write the last output to FILE (.csv or .json) to edit "
                        "for --correct")
    current = sub.add_parser("set-current-build", help="make a build of the worker deployment current (worker "
                             "versioning: its workers then take new workflow tasks)")
    current.add_argument("build_id")
    current.add_argument("--deployment", help="the deployment (default: TOLLGATE_WORKER_DEPLOYMENT)")
    prune = sub.add_parser("prune", help="delete run artifacts older than the retention (TOLLGATE_RUN_RETENTION_DAYS, "
                           "30): chunks, outputs, reports, reuse entries and uploads")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="the retention for this prune")
    prune.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    keygen = sub.add_parser("keygen", help="print a new payload encryption key (id:base64) for TOLLGATE_PAYLOAD_KEYS; "
                            "put it first to rotate, keep the old ones after it")
    keygen.add_argument("--id", help="the key's id (default: a random one)")
    codec = sub.add_parser("codec-server", help="serve Temporal's codec endpoint so the Web UI shows decrypted "
                           "payloads to users who hold the token (TOLLGATE_CODEC_TOKEN)")
    codec.add_argument("--host", default="127.0.0.1")
    codec.add_argument("--port", type=int, default=8888)
    codec.add_argument("--origin", default="http://localhost:8233", help="the Web UI's origin, allowed by CORS")
    trace = sub.add_parser("trace", help="print a run's span tree from the spans written to TOLLGATE_TRACE_DIR")
    trace.add_argument("run_id")
    status = sub.add_parser("status", help="show a run's state and progress")
    status.add_argument("run_id")
    result = sub.add_parser("result", help="print a finished run's report")
    result.add_argument("run_id")
    result.add_argument("--json", action="store_true", help="print the whole report as JSON")
    result.add_argument("--wait", action="store_true", help="wait if the run is still going")
    dev = sub.add_parser("dev", help="run the whole stack on this machine until Ctrl+C")
    dev.add_argument("--analyzers", type=int, default=1, help="analyzer worker processes (default 1)")
    dev.add_argument("--validators", type=int, default=1, help="validator worker processes (default 1)")
    demo = sub.add_parser("demo", help="start the stack, analyze the sample export, print the report, stop")
    demo.add_argument("--contacts", type=int, default=DEMO_CONTACTS, help="contacts of the sample to analyze")
    demo.add_argument("--opportunities", type=int, default=DEMO_OPPORTUNITIES,
                      help="opportunities of the sample to analyze")
    demo.add_argument("--keep", action="store_true", help="leave the stack up afterwards, for the UI")
    demo.add_argument("--verbose", action="store_true", help="show the services' log lines here too (they are "
                      "always written to .tollgate/logs/)")
    return root


async def cmd_trace(args: argparse.Namespace, settings: Settings) -> None:
    from client.trace_view import load_spans, waterfall

    if settings.trace_dir is None:
        raise CliError("no local spans: set TOLLGATE_TRACE_DIR for the services (and this command) so that they "
                       "write their spans there", EXIT_USAGE)
    lines = waterfall(load_spans(Path(settings.trace_dir)), args.run_id)
    if not lines:
        raise CliError(f"no spans of run {args.run_id} in {settings.trace_dir}", EXIT_USAGE)
    _emit(lines)


async def cmd_review(args: argparse.Namespace, settings: Settings) -> None:
    from rich.console import Console

    from client import review as review_cli
    console = Console(width=max(Console().width, 160) if not sys.stdout.isatty() else None)
    choices: tuple[ReviewAction, ...] = ("approve", "correct", "retry", "quarantine", "abort")
    actions = [name for name in choices if getattr(args, name)]
    if len(actions) > 1:
        raise CliError(f"one decision at a time (given: {', '.join('--' + a for a in actions)})", EXIT_USAGE)
    if (actions or args.export) and not args.step:
        raise CliError("a decision names the run and the step: tollgate review RUN STEP --approve …", EXIT_USAGE)
    client = await _client(settings)
    pending = await review_cli.waiting_steps(client, args.run_id)
    if not args.step:
        review_cli.listing(pending, console)
        return
    waiting = next((p for p in pending if p.step == args.step), None)
    if waiting is None:
        here = ", ".join(p.step for p in pending) or "none"
        raise CliError(f"step {args.step} of run {args.run_id} is not waiting for a review (waiting in this run: "
                       f"{here})", EXIT_USAGE)
    store = store_from(settings)
    try:
        if args.export:
            written = await asyncio.to_thread(review_cli.export, store, waiting, Path(args.export))
            _emit([f"wrote the last output of {args.step} ({written} records) to {args.export}; edit it and send it "
                   f"with: tollgate review {args.run_id} {args.step} --correct {args.export}"])
            return
        if not actions:
            await asyncio.to_thread(review_cli.show, store, waiting, console)
            return
        receipt = await review_cli.decide(client, store, waiting, actions[0], review_cli.reviewer_name(args.reviewer),
                                          args.note or "", Path(args.correct) if args.correct else None)
    except review_cli.ReviewError as error:
        raise CliError(f"{args.run_id} {args.step}: {error}") from None
    _emit([f"{args.run_id} {receipt.step}: {receipt.message}"])


async def cmd_deployment(args: argparse.Namespace, settings: Settings) -> None:
    """Make a build of the worker deployment the current one: new workflow tasks go to its workers."""
    from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest

    name = args.deployment or settings.worker_deployment
    if not name:
        raise CliError("no deployment: give --deployment or set TOLLGATE_WORKER_DEPLOYMENT", EXIT_USAGE)
    client = await _client(settings)
    await client.workflow_service.set_worker_deployment_current_version(SetWorkerDeploymentCurrentVersionRequest(
        namespace=settings.temporal_namespace, deployment_name=name, build_id=args.build_id,
        identity="tollgate-cli", ignore_missing_task_queues=True))
    _emit([f"deployment {name}: build {args.build_id} is current; auto-upgrade workflows move to it at their next "
           "workflow task"])


async def cmd_prune(args: argparse.Namespace, settings: Settings) -> None:
    from client.prune import prune

    days = args.older_than if args.older_than is not None else settings.run_retention_days
    done = await asyncio.to_thread(prune, store_from(settings), days, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    _emit([f"{verb} {done.files} files: {len(done.runs)} runs older than {days:g} days"
           + (f" ({', '.join(done.runs[:10])}{', …' if len(done.runs) > 10 else ''})" if done.runs else "")])


async def cmd_keygen(args: argparse.Namespace, settings: Settings) -> None:
    from shared.codec import new_key_entry

    entry = new_key_entry(args.id)
    _emit([f"{entry['id']}:{entry['key']}"])


async def cmd_codec_server(args: argparse.Namespace, settings: Settings) -> None:
    from client.codec_server import serve_codec
    from shared.codec import KeyringError, keyring_from

    try:
        keyring = keyring_from(settings)
    except KeyringError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    if keyring is None:
        raise CliError("payload encryption is off (TOLLGATE_ENCRYPT_PAYLOADS=false): nothing to decode", EXIT_USAGE)
    token = os.environ.get("TOLLGATE_CODEC_TOKEN")
    await asyncio.to_thread(serve_codec, keyring, args.host, args.port, token, args.origin)


COMMANDS = {"run": cmd_run, "keygen": cmd_keygen, "prune": cmd_prune, "set-current-build": cmd_deployment,
            "codec-server": cmd_codec_server, "review": cmd_review,
            "status": cmd_status, "result": cmd_result, "watch": cmd_watch,
            "trace": cmd_trace, "cancel": cmd_cancel}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    if args.command in ("dev", "demo"):
        from client import demo

        runner = demo.run_demo if args.command == "demo" else demo.run_dev_command
        sys.stdout.flush()
        os._exit(runner(args, get_settings()))
    if args.command == "run" and args.json and not args.wait:
        args.wait = True
    code = 0
    if args.command != "trace":
        setup_tracing(get_settings(), "cli")
    try:
        asyncio.run(COMMANDS[args.command](args, get_settings()))
    except CliError as error:
        print(f"tollgate: {error}", file=sys.stderr)
        code = error.code
    except RPCError as error:
        print(f"tollgate: cannot reach Temporal at {get_settings().temporal_address}: {error}", file=sys.stderr)
        code = EXIT_FAILED
    except (ConnectionError, RuntimeError) as error:
        print(f"tollgate: {error}", file=sys.stderr)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    flush_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
