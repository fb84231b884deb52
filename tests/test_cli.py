"""The ``tollgate`` command as a user runs it: a separate process against the running stack."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path

from client.cli import CliError, check_exports
from deploy.scripted_model import ScriptedLlm
from tests.harness import ARTICLE, ROOT, Stack, tollgate_cli

CONTACTS = str(ARTICLE / "crm_contacts.csv")
OPPORTUNITIES = str(ARTICLE / "crm_opportunities.csv")


async def tollgate(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await tollgate_cli(stack.env, *args)


async def test_run_wait_prints_the_summary_and_ui_link(stack: Stack, run_id: str) -> None:
    done = await tollgate(stack, "run", CONTACTS, OPPORTUNITIES, "--wait", "--run-id", run_id)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} started" in done.stdout
    assert f"/namespaces/default/workflows/{run_id}" in done.stdout
    assert "contacts 5 at 3 companies (top: Acme Corp, 3)" in done.stdout
    assert "open pipeline $75,000, won $80,000, win rate 100.0% by value, 100.0% by count" in done.stdout
    # the report's path is absolute, wherever the workers run and this command was typed
    report = Path(stack.settings.artifact_root) / "runs" / run_id / "report" / "report.md"
    assert f"report: {report.resolve()}" in done.stdout
    assert "16686" not in done.stdout  # no trace link: no trace endpoint or Jaeger URL is configured

    status = await tollgate(stack, "status", run_id)
    assert status.returncode == 0 and f"run {run_id}: completed" in status.stdout
    assert "contacts: 1/1 chunks done, 0 rejections, 0 retries" in status.stdout

    result = await tollgate(stack, "result", run_id, "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)  # nothing but the report on stdout
    assert report["run_id"] == run_id and report["facts"]["contacts"]["total_contacts"] == 5


async def test_run_follow_prints_progress_then_the_summary(stack: Stack, run_id: str) -> None:
    done = await tollgate(stack, "run", CONTACTS, OPPORTUNITIES, "--follow", "--wait", "--run-id", run_id)
    assert done.returncode == 0, done.stderr
    assert f"#1 run {run_id} started" in done.stdout
    assert "run completed: 5 contacts enriched, 4 opportunities assessed, 3 insights; 0 gate rejections" in done.stdout
    assert "contacts: 1/1 chunks done, 0 rejections, 0 retries" in done.stdout
    assert done.stdout.index("run completed") < done.stdout.index("contacts 5 at 3 companies")


async def test_run_json_keeps_stdout_for_the_report(stack: Stack, run_id: str) -> None:
    done = await tollgate(stack, "run", CONTACTS, OPPORTUNITIES, "--wait", "--json", "--run-id", run_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["facts"]["opportunities"]["total_value"] == "155000.00"  # exact, as a decimal
    assert f"run {run_id} started" in done.stderr


async def test_failed_run_exits_non_zero_with_the_reason(stack: Stack, scripted_llm: ScriptedLlm, run_id: str,
                                                         tmp_path: Path) -> None:
    scripted_llm.script(run_id, "opportunities/chunk-00000", "opportunity-risk", ["invent_ids"])
    empty = tmp_path / "opps.csv"
    empty.write_text("")
    done = await tollgate(stack, "run", CONTACTS, str(empty), "--wait", "--run-id", run_id)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"tollgate: run {run_id} failed: opps.csv: the file is empty; expected a header row with columns "
        "id, name, stage, amount, contact_id, close_date")
    status = await tollgate(stack, "status", run_id)
    assert status.returncode == 1 and f"run {run_id}: failed" in status.stdout


async def test_usage_errors_are_one_line(stack: Stack, run_id: str) -> None:
    missing = await tollgate(stack, "run", "nope.csv", OPPORTUNITIES)
    assert missing.returncode == 2 and missing.stderr.strip() == "tollgate: nope.csv: file not found"
    unknown = await tollgate(stack, "result", run_id)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"tollgate: no run {run_id}; `tollgate run` starts one"


async def test_unreachable_temporal_is_a_clear_error(stack: Stack) -> None:
    done = await tollgate_cli({**stack.env, "TOLLGATE_TEMPORAL_ADDRESS": "127.0.0.1:1"}, "status", "x")
    assert done.returncode == 1
    assert done.stderr.startswith("tollgate: cannot reach Temporal at 127.0.0.1:1 (failed client connect); is the "
                                  "stack running?")


async def test_the_cli_refuses_what_cannot_be_the_two_exports(stack: Stack, tmp_path: Path) -> None:
    swapped = await tollgate(stack, "run", OPPORTUNITIES, CONTACTS)
    assert swapped.returncode == 2
    assert swapped.stderr == ("tollgate: the two files look swapped: crm_opportunities.csv has the opportunities' "
                              "columns and crm_contacts.csv the contacts'; the contacts export comes first\n")
    folder = await tollgate(stack, "run", str(tmp_path), OPPORTUNITIES)
    assert folder.returncode == 2
    assert folder.stderr == f"tollgate: {tmp_path} is a directory; give the CSV file itself\n"
    missing = await tollgate(stack, "run", CONTACTS, str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "nope.csv: file not found" in missing.stderr
    helped = await tollgate(stack, "run", "--help")
    assert "first the contacts, with columns id, name, company, title, created_date" in " ".join(helped.stdout.split())


async def test_run_wait_on_a_terminal_shows_a_live_line(stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:2.5"])
    command = shlex.join([sys.executable, "-m", "client.cli", "run", CONTACTS, OPPORTUNITIES,
                          "--wait", "--run-id", run_id])
    # `script` gives the command a terminal, as a user's shell would
    done = await asyncio.to_thread(subprocess.run, ["script", "-qec", command, "/dev/null"], env=stack.env,
                                   cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert f"run {run_id} is starting" in done.stdout or f"run {run_id}: contacts: " in done.stdout
    assert f"run {run_id}: contacts: " in done.stdout  # the tally, while the slow step runs
    piped = await tollgate(stack, "result", run_id)  # not a terminal: no live line, only the summary
    assert "is starting" not in piped.stdout + piped.stderr


def test_swapped_exports_are_recognised_whatever_their_separator(tmp_path: Path) -> None:
    """Semicolon- and tab-separated exports, which ingest reads, are recognised as swapped as the comma-separated
    ones are; the same files in their order pass."""
    for separator in (",", ";", "\t"):
        contacts = tmp_path / f"contacts{ord(separator)}.csv"
        contacts.write_text(separator.join(["id", "name", "company", "title", "created_date"]) + "\n")
        deals = tmp_path / f"deals{ord(separator)}.csv"
        deals.write_text(separator.join(["id", "name", "stage", "amount", "contact_id", "close_date"]) + "\n")
        check_exports(contacts, deals)
        try:
            check_exports(deals, contacts)
        except CliError as error:
            assert str(error).startswith(f"the two files look swapped: {deals.name} has the opportunities' columns")
            assert error.code == 2
        else:
            raise AssertionError(f"swapped exports separated by {separator!r} were not refused")
