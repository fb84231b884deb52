"""The gated pipeline end to end: real Temporal server, three worker processes, scripted LLM over HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from shared.contracts import RunResult
from shared.failures import failure_reason
from tests.harness import ARTICLE, Stack

CONTACTS = ARTICLE / "crm_contacts.csv"
OPPORTUNITIES = ARTICLE / "crm_opportunities.csv"


async def start(client: Client, stack: Stack, run_id: str, contacts: Path = CONTACTS,
                opportunities: Path = OPPORTUNITIES, **settings: Any) -> WorkflowHandle[object, RunResult]:
    return await start_run(client, stack.settings.model_copy(update=settings), contacts, opportunities, run_id)


async def finish(handle: WorkflowHandle[object, RunResult]) -> RunResult:
    return await asyncio.wait_for(handle.result(), timeout=90)


async def fail(handle: WorkflowHandle[object, RunResult]) -> str:
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), timeout=90)
    return failure_reason(caught.value)


async def test_clean_run_produces_the_correct_report(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                     run_id: str) -> None:
    result = await finish(await start(client, stack, run_id))
    report = result.report
    contacts, opportunities = report.facts.contacts, report.facts.opportunities
    assert (contacts.total_contacts, contacts.unique_companies, contacts.top_company) == (5, 3, "Acme Corp")
    assert contacts.top_company_contacts == 3 and contacts.unique_titles == 5
    assert [(c.key, c.count) for c in contacts.company_distribution] == [("Acme Corp", 3), ("DataCo", 1),
                                                                         ("TechStart", 1)]
    assert (opportunities.total_opportunities, opportunities.total_value, opportunities.open_pipeline_value,
            opportunities.won_value) == (4, Decimal(155000), Decimal(75000), Decimal(80000))
    assert opportunities.win_rate_by_value_pct == Decimal(100)  # won / (won + lost): nothing was lost
    assert {(s.stage, s.count, s.value) for s in opportunities.stage_breakdown} == {
        ("Closed Won", 2, Decimal(80000)), ("Negotiation", 1, Decimal(50000)), ("Prospecting", 1, Decimal(25000))}
    assert opportunities.orphan_opportunities == 0
    assert report.summary.enriched_contacts == 5 and report.summary.assessed_opportunities == 4
    assert report.summary.decision_makers == 4
    assert len(report.insights) == 3
    assert [f.id for f in report.insights[0].facts] == ["open_pipeline_value"]  # each insight with its facts
    assert report.insights[2].insight.text == "Acme Corp has the most contacts."
    assert report.gates.gated_steps == 3 and report.gates.attempts == 3
    assert sum(x.rejections for x in report.gates.rejections_by_layer) == 0
    # CEO, VP Sales and Head of Eng are settled by their titles: the model labels the CTO and the Developer
    contact_requests = scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")
    assert len(contact_requests) == 1 and '"title":"CTO"' in contact_requests[0].prompt
    assert '"title":"CEO"' not in contact_requests[0].prompt
    assert report.usage.calls == 6  # three analyses and three AI reviews
    store_root = Path(stack.settings.artifact_root)
    markdown = (store_root / result.report_markdown.key).read_text()
    assert "| 1 | executive | executive | yes |" in markdown
    assert "| won | $80,000 in 2 deals |" in markdown and "| lost | $0 in 0 deals |" in markdown
    assert "3 gated steps, 3 attempts; rejections by layer:" in markdown and "LLM: 6 calls, " in markdown
    lines = (store_root / report.enrichments.key).read_text().splitlines()
    assert len(lines) == 9


async def test_wrong_figure_is_caught_by_rules_and_the_retry_carries_the_reason(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "insights", "insights", ["wrong_figure", "correct"])
    report = (await finish(await start(client, stack, run_id))).report

    requests = scripted_llm.requests_for(run_id, "insights", "insights")
    assert len(requests) == 2
    assert "REJECTED" not in requests[0].prompt
    assert "insight 1 states $76,000, which none of its facts shows; no fact shows it, leave it out" in (
        requests[1].prompt)
    # the rules rejected it, so the AI validator was asked only about the second attempt
    assert len(scripted_llm.requests_for(run_id, "insights", "validator")) == 1
    layers = {x.layer: x.rejections for x in report.gates.rejections_by_layer}
    assert layers == {"deterministic": 1, "ai": 0}
    assert report.gates.steps_fixed_by_retry == 1
    [rejected] = report.gates.rejected_steps
    assert rejected.step == "insights" and rejected.attempts == 2
    assert rejected.rejections[0].failed_checks[0].check == "unbound_number"


async def test_ai_rejection_reruns_only_that_step(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                  run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "validator", ["ai_reject", "correct"])
    report = (await finish(await start(client, stack, run_id))).report

    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 2
    assert len(scripted_llm.requests_for(run_id, "opportunities/chunk-00000", "opportunity-risk")) == 1
    assert len(scripted_llm.requests_for(run_id, "insights", "insights")) == 1
    retry = scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")[1]
    # the judge reviews only what the title does not settle: of the article's five, the CTO
    assert "contact 2: the rationale does not fit the record" in retry.prompt
    layers = {x.layer: x.rejections for x in report.gates.rejections_by_layer}
    assert layers == {"deterministic": 0, "ai": 1}


async def test_spent_budget_stops_the_run_naming_the_step_and_reasons(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
    reason = await fail(await start(client, stack, run_id, gate_attempts=3))

    assert "step contacts/chunk-00000 was rejected 3 times" in reason
    assert "contact id 99999 is not in the input" in reason
    assert "contact id 2 was not answered" in reason  # the CTO: the only title of the five the model is asked
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 3
    assert scripted_llm.requests_for(run_id, "insights") == []  # nothing downstream ran


async def test_malformed_json_is_a_schema_rejection_fixed_by_retry(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["malformed_json", "correct"])
    report = (await finish(await start(client, stack, run_id))).report
    [rejected] = report.gates.rejected_steps
    assert rejected.rejections[0].failed_checks[0].check == "schema"
    retry = scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")[1]
    assert "REJECTED" in retry.prompt and "JSON" in retry.prompt


async def test_activity_exceptions_are_retried_by_temporal(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                           run_id: str) -> None:
    scripted_llm.script(run_id, "opportunities/chunk-00000", "opportunity-risk", ["http_500", "correct"])
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["http_429", "correct"])
    scripted_llm.script(run_id, "insights", "insights", ["slow:5", "correct"])  # past the 3 s client timeout
    report = (await finish(await start(client, stack, run_id))).report

    for step, agent in [("opportunities/chunk-00000", "opportunity-risk"),
                        ("contacts/chunk-00000", "contact-enricher"), ("insights", "insights")]:
        requests = scripted_llm.requests_for(run_id, step, agent)
        assert len(requests) == 2, step
        assert {r.attempt for r in requests} == {1}, "a provider failure is a Temporal retry, not a gate attempt"
    assert report.gates.attempts == 3 and report.gates.rejected_steps == []


async def test_rate_limit_waits_for_retry_after(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                                run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["http_429", "correct"])
    await finish(await start(client, stack, run_id))
    first, second = scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")
    assert second.received - first.received >= 0.95  # the server said Retry-After: 1


async def test_branches_run_in_parallel(client: Client, stack: Stack, scripted_llm: ScriptedLlm,
                                        run_id: str) -> None:
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["slow:1.5"])
    scripted_llm.script(run_id, "opportunities/chunk-00000", "opportunity-risk", ["slow:1.5"])
    await finish(await start(client, stack, run_id))
    [contacts] = scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")
    [opportunities] = scripted_llm.requests_for(run_id, "opportunities/chunk-00000", "opportunity-risk")
    # each request is answered 1.5 s after it arrives: they overlap iff each arrived before the other was answered
    assert abs(contacts.received - opportunities.received) < 1.5


async def test_chunks_fan_out_across_batches(client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str,
                                             tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    rows = [f"{i},Person {i},Company {i % 7},{'CEO' if i % 10 == 0 else 'Engineering Manager'},2024-01-01"
            for i in range(1, 48)]
    contacts.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    result = await finish(await start(client, stack, run_id, contacts=contacts, contact_chunk_size=5,
                                      chunks_per_batch=3, max_parallel_chunks=2))
    report = result.report
    assert report.summary.enriched_contacts == 47
    assert report.gates.gated_steps == 10 + 1 + 1
    steps = {r.step for r in scripted_llm.requests_for(run_id, agent="contact-enricher")}
    assert steps == {f"contacts/chunk-{i:05d}" for i in range(10)}
    children = [w.id async for w in client.list_workflows(f"WorkflowId STARTS_WITH '{run_id}.contacts.batch-'")]
    # batches of whole rounds: 2 chunks in flight, so batches of 2 (not 3, which would leave a slot idle each time)
    assert len(children) == 5


async def test_bad_csv_fails_fast_naming_file_row_and_column(client: Client, stack: Stack, run_id: str,
                                                             tmp_path: Path) -> None:
    bad = tmp_path / "opps.csv"
    bad.write_text("id,name,stage,amount,contact_id,close_date\n1,Deal,Prospecting,lots,1,2024-01-01\n")
    handle = await start(client, stack, run_id, opportunities=bad)
    reason = await fail(handle)
    assert reason == "opps.csv, row 1, column 'amount': 'lots' is not a number"
    history = await handle.fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert len(started) == 1 and started[0].activity_task_started_event_attributes.attempt == 1
    # the user's own bad input is one line in the service log, with the run and the step, not a traceback
    lines = stack.log_text().splitlines()
    [at] = [i for i, line in enumerate(lines) if f"[{run_id} ingest]" in line or (
        run_id in line and "BadInput: opps.csv, row 1, column 'amount'" in line)]
    assert "Completing activity as failed: BadInput: opps.csv, row 1, column 'amount'" in lines[at]
    assert not lines[at + 1].startswith("Traceback") if at + 1 < len(lines) else True


async def test_duplicate_run_id_is_refused(client: Client, stack: Stack, run_id: str) -> None:
    from client.cli import CliError

    await finish(await start(client, stack, run_id))
    with pytest.raises(CliError, match=f"run {run_id} already exists; follow it with `tollgate status {run_id}`"):
        await start(client, stack, run_id)


async def test_token_budget_stops_the_run_before_it_overspends(client: Client, stack: Stack,
                                                               scripted_llm: ScriptedLlm, run_id: str,
                                                               tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    rows = [f"{i},Person {i},Company {i % 3},Engineering Manager,2024-01-01" for i in range(1, 26)]
    contacts.write_text("id,name,company,title,created_date\n" + "\n".join(rows) + "\n")
    reason = await fail(await start(client, stack, run_id, contacts=contacts, contact_chunk_size=5,
                                    max_parallel_chunks=1, run_token_budget=2000))
    assert f"run {run_id} stopped before contacts/chunk-0000" in reason
    assert "its token budget is spent (" in reason and "raise TOLLGATE_RUN_TOKEN_BUDGET" in reason
    analysed = {r.step for r in scripted_llm.requests_for(run_id, agent="contact-enricher")}
    assert 1 <= len(analysed) < 5  # it stopped part-way through the branch
    assert scripted_llm.requests_for(run_id, "insights") == []


async def test_report_accounts_tokens_and_cost_by_branch(client: Client, stack: Stack, run_id: str) -> None:
    report = (await finish(await start(client, stack, run_id))).report
    branches = {b.branch: b.usage for b in report.usage_by_branch}
    assert set(branches) == {"contacts", "opportunities", "insights"}
    assert all(u.calls == 2 and u.input_tokens > 0 and u.output_tokens > 0 for u in branches.values())
    assert report.usage.tokens == sum(u.tokens for u in branches.values())
    assert report.usage.cost_usd == 0.0  # "scripted" is not in the price table: no cost is invented


async def test_an_unreadable_judge_is_an_infrastructure_failure_not_a_verdict(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str) -> None:
    # every answer of the AI validator for this chunk is broken JSON: Temporal retries the validation, and when
    # it gives up the run fails naming the step and the activity; the step is neither rejected nor passed
    scripted_llm.script(run_id, "contacts/chunk-00000", "validator", ["malformed_json"])
    handle = await start(client, stack, run_id, activity_max_attempts=2)
    reason = await fail(handle)
    assert reason.startswith("step contacts/chunk-00000: activity validate_contact_chunk gave up after 2 attempts "
                             "(its retry limit); the last attempt said: the AI validator's answer for "
                             "contacts/chunk-00000 was unreadable"), reason
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "validator")) == 2
    # no gate attempt was spent on it: the analysis ran once
    assert len(scripted_llm.requests_for(run_id, "contacts/chunk-00000", "contact-enricher")) == 1
