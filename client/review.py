"""``tollgate review``: the reviewer's side of a spent gate budget.

``tollgate review`` lists the steps waiting across runs; ``tollgate review RUN STEP`` shows the step's records, its
last output and the validator's reasons side by side; ``--approve``, ``--correct FILE``, ``--retry --note``,
``--quarantine``, ``--abort --note`` decide. A decision is a Temporal update to the workflow the step waits in:
the workflow checks it (and runs a correction through the step's deterministic rules) before it stands.
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import json
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from shared import steps
from shared.artifacts import ArtifactStore
from shared.contracts import (
    ContactChunkOutput,
    ContactEnrichment,
    InsightsOutput,
    OpportunityChunkOutput,
    OpportunityRisk,
    PendingReview,
    ReviewAction,
    ReviewDecision,
    ReviewReceipt,
)
from shared.datasets import read_contacts, read_opportunities
from shared.failures import failure_reason
from shared.figures import counted

Output = ContactChunkOutput | OpportunityChunkOutput | InsightsOutput
RUNNING_WORKFLOWS = (f'ExecutionStatus="Running" AND (WorkflowType="{steps.WORKFLOW}" OR '
                     f'WorkflowType="{steps.BATCH_WORKFLOW}")')
MAX_CORRECTION_BYTES = 5 * 1024 * 1024


class ReviewError(Exception):
    """A review command that cannot be carried out, in one line."""


def reviewer_name(given: str | None) -> str:
    """Who decides: ``--reviewer``, else TOLLGATE_REVIEWER, else the login name."""
    name = given or os.environ.get("TOLLGATE_REVIEWER") or getpass.getuser()
    return name.strip()[:100] or "unknown"


def _belongs(workflow_id: str, run_id: str | None) -> bool:
    return run_id is None or workflow_id == run_id or workflow_id.startswith(f"{run_id}.")


async def waiting_steps(client: Client, run_id: str | None = None) -> list[PendingReview]:
    """Every step waiting for a decision, across runs (or in one run), oldest first: the running workflows are
    asked, so the answer is the workflows' own state, not a copy of it."""
    found: list[PendingReview] = []
    async for execution in client.list_workflows(RUNNING_WORKFLOWS):
        if not _belongs(execution.id, run_id):
            continue
        try:
            found += await client.get_workflow_handle(execution.id).query(
                "pending_reviews", result_type=list[PendingReview])
        except RPCError:
            continue  # it ended between the listing and the query
    return sorted(found, key=lambda p: p.since)


def _duration(seconds: int) -> str:
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else (
        f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s")


def _age(since: datetime) -> str:
    return _duration(int((datetime.now(UTC) - since).total_seconds()))


def listing(pending: Sequence[PendingReview], console: Console) -> None:
    if not pending:
        console.print("no step is waiting for a review")
        return
    title = "1 step waiting" if len(pending) == 1 else f"{len(pending)} steps waiting"
    table = Table(title=f"{title} for a review", title_justify="left")
    for column in ("run", "step", "waiting", "attempts", "decide within", "why (the validator's last reasons)"):
        table.add_column(column, overflow="fold")
    for p in pending:
        why = f"{p.layer} layer, {p.failed_total} checks: " + "; ".join(c.reason for c in p.reasons[:2])
        table.add_row(p.run_id, p.step, _age(p.since), str(p.attempts), _age_until(p.deadline), why)
    console.print(table)
    console.print("see one: tollgate review RUN STEP")


def _age_until(deadline: datetime) -> str:
    seconds = int((deadline - datetime.now(UTC)).total_seconds())
    return "due now" if seconds <= 0 else _duration(seconds)


def output_type(step: str) -> type[Output]:
    if step.startswith("contacts/"):
        return ContactChunkOutput
    if step.startswith("opportunities/"):
        return OpportunityChunkOutput
    return InsightsOutput


def _records(store: ArtifactStore, pending: PendingReview) -> dict[str, str]:
    """Each input record as one line, by id (a chunk step's rows)."""
    ref = pending.chunk
    if ref is None:
        return {}
    if pending.step.startswith("contacts/"):
        return {r.id: f"{r.name} · {r.title or '(no title)'} · {r.company}" for r in read_contacts(store, ref)}
    return {r.id: f"{r.name} · {r.stage} · {r.amount}" for r in read_opportunities(store, ref)}


def _output_rows(output: Output) -> dict[str, str]:
    if isinstance(output, ContactChunkOutput):
        return {e.id: f"{e.seniority} · {e.department} · {'decision maker' if e.decision_maker else 'not a DM'} — "
                f"{e.rationale}" for e in output.enrichments}
    if isinstance(output, OpportunityChunkOutput):
        return {r.id: f"{r.risk} risk — {r.reason}" for r in output.risks}
    return {str(n): f"{i.title}: {i.text} [cites {', '.join(i.facts)}]" for n, i in enumerate(output.insights, 1)}


def show(store: ArtifactStore, pending: PendingReview, console: Console) -> None:
    """The records, the last output and the reasons, side by side."""
    console.print(f"[bold]{pending.run_id} {pending.step}[/bold]: {pending.attempts} attempts rejected, waiting "
                  f"{_age(pending.since)} (quarantined if nobody decides by {pending.deadline:%Y-%m-%d %H:%M} UTC)")
    output: Output | None = None
    if pending.last_output.schema_error is None:
        output = store.read_model(pending.last_output.output, output_type(pending.step))
    else:
        console.print(f"the last output did not parse: {pending.last_output.schema_error}")
    records = _records(store, pending)
    produced = _output_rows(output) if output is not None else {}
    reasons: dict[str | None, list[str]] = {}
    for check in pending.reasons:
        reasons.setdefault(check.record_id, []).append(f"{check.check}: {check.reason}")
    table = Table(title=f"last rejection: {pending.layer} layer, {pending.failed_total} checks failed",
                  title_justify="left", show_lines=True)
    for column in ("id", "record", "last output", "reasons"):
        table.add_column(column, overflow="fold")
    ids = [*records, *(i for i in produced if i not in records)]
    ids += [i for i in reasons if i is not None and i not in ids]
    for record_id in ids:
        table.add_row(record_id, records.get(record_id, ""), produced.get(record_id, "[red](missing)[/red]"),
                      "\n".join(reasons.get(record_id, [])))
    console.print(table)
    for line in reasons.get(None, []):
        console.print(f"- {line}")
    console.print("decide: --approve | --correct FILE (JSON or CSV; --export FILE writes the last output to edit) | "
                  "--retry --note TEXT | --quarantine | --abort --note TEXT")


def export(store: ArtifactStore, pending: PendingReview, target: Path) -> int:
    """Write the last output to ``target`` (CSV for chunk steps when the name ends in .csv, else JSON)."""
    if pending.last_output.schema_error is not None:
        raise ReviewError(f"the last output of {pending.step} did not parse; there is nothing to export")
    output = store.read_model(pending.last_output.output, output_type(pending.step))
    if target.suffix.lower() == ".csv":
        rows = [r.model_dump(mode="json") for r in _items(output)]
        if isinstance(output, InsightsOutput):
            raise ReviewError("insights are corrected as JSON; give a .json file")
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else list(_item_type(output).model_fields)
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()})
        target.write_text(buffer.getvalue())
    else:
        target.write_text(output.model_dump_json(indent=2))
    return len(_items(output))


def _items(output: Output) -> Sequence[BaseModel]:
    if isinstance(output, ContactChunkOutput):
        return output.enrichments
    if isinstance(output, OpportunityChunkOutput):
        return output.risks
    return output.insights


def _item_type(output: Output) -> type[BaseModel]:
    return ContactEnrichment if isinstance(output, ContactChunkOutput) else OpportunityRisk


def read_correction(path: Path, step: str) -> Output:
    """A corrected output from JSON (the output object, or the list of its items) or CSV (one row per record,
    list cells separated by ';'); an unreadable file is refused with what is wrong, before anything is sent."""
    kind = output_type(step)
    if not path.is_file():
        raise ReviewError(f"{path}: file not found")
    if path.stat().st_size > MAX_CORRECTION_BYTES:
        raise ReviewError(f"{path} is larger than {MAX_CORRECTION_BYTES // 1024 // 1024} MB; a correction is one "
                          "step's records")
    text = path.read_text(encoding="utf-8-sig")
    field = "enrichments" if kind is ContactChunkOutput else "risks" if kind is OpportunityChunkOutput else "insights"
    try:
        if path.suffix.lower() == ".csv":
            if kind is InsightsOutput:
                raise ReviewError("insights are corrected as JSON, not CSV")
            rows = []
            for row in csv.DictReader(io.StringIO(text)):
                item = {k: v for k, v in row.items() if k is not None}
                if "decision_maker" in item:  # read as the contract reads a flag: true/false, yes/no, 1/0, y/n, on/off;
                    item["decision_maker"] = item["decision_maker"].strip()  # anything else is refused, not false
                item["quality_flags"] = [f for f in item.get("quality_flags", "").split(";") if f]
                rows.append(item)
            return kind.model_validate({field: rows})
        data = json.loads(text)
        return kind.model_validate({field: data} if isinstance(data, list) else data)
    except json.JSONDecodeError as error:
        raise ReviewError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    except ValidationError as error:
        first = error.errors()[0]
        loc = first["loc"]
        # a CSV's problem is named as ingest names one, by data row and column; a JSON's by its path in the object
        where = (f"row {loc[1] + 1}, column {loc[2]!r}" if path.suffix.lower() == ".csv" and len(loc) == 3
                 and isinstance(loc[1], int) else ".".join(str(x) for x in loc))
        raise ReviewError(f"{path}: {counted(error.error_count(), 'problem')}; the first: {where}: "
                          f"{first['msg']}") from None


async def decide(client: Client, store: ArtifactStore, pending: PendingReview, action: ReviewAction,
                 reviewer: str, note: str, correction: Path | None) -> ReviewReceipt:
    """Send one decision; a refused one (by the workflow's checks or the step's rules) raises with the reason."""
    ref, records = None, 0
    if action == "correct":
        assert correction is not None
        output = read_correction(correction, pending.step)
        records = len(_items(output))
        ref = await asyncio.to_thread(store.write_model, steps.correction_key(
            pending.run_id, pending.step, uuid.uuid4().hex[:12]), output, True)
    decision = ReviewDecision(step=pending.step, action=action, reviewer=reviewer, note=note, correction=ref,
                              records=records)
    try:
        receipt: ReviewReceipt = await client.get_workflow_handle(pending.workflow_id).execute_update(
            "review", decision, result_type=ReviewReceipt)
        return receipt
    except WorkflowUpdateFailedError as error:
        raise ReviewError(f"refused: {failure_reason(error)}") from None
    except RPCError as error:
        raise ReviewError(f"refused: {error.message}") from None
