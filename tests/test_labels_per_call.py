"""A chunk with more distinct titles than one model call should carry is asked in several bounded calls: every
call within ``labels_per_call``, every contact labelled once, and the gate passes the whole; the validator's
reasons reach only the call that asks about their record."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from deploy.scripted_model import ScriptedLlm
from services.analyzer.activities import AnalyzerActivities, feedback_for, per_call
from services.validator.activities import ValidatorActivities
from shared.artifacts import ArtifactStore
from shared.contracts import ChunkTask, ContactChunkOutput, ContactRecord, FailedCheck, ValidationTask
from shared.datasets import chunk_key, write_chunk
from shared.llm import resolve_endpoint
from shared.settings import Settings


def test_records_are_asked_in_calls_of_at_most_the_limit() -> None:
    assert per_call(list(range(40)), 16) == [list(range(16)), list(range(16, 32)), list(range(32, 40))]
    assert per_call([1, 2], 16) == [[1, 2]] and per_call([], 16) == []


def test_a_call_reads_the_reasons_about_its_own_records_only() -> None:
    about_3 = FailedCheck(check="title_rule", record_id="3", reason="contact 3: a manager is mid or senior")
    about_9 = FailedCheck(check="title_rule", record_id="9", reason="contact 9: ...")
    general = FailedCheck(check="schema", reason="the answer was not valid JSON")
    standing_for = {"3": "1"}  # contact 3 shares its title with contact 1, which is asked
    assert feedback_for([about_3, about_9, general], {"1", "2"}, standing_for) == [about_3, general]
    assert feedback_for([about_3, about_9, general], {"9"}, standing_for) == [about_9, general]


async def test_forty_distinct_titles_are_three_calls_and_one_validated_output(tmp_path: Path) -> None:
    llm = ScriptedLlm().start()
    try:
        settings = Settings(llm_provider="openai-compatible", llm_base_url=llm.base_url, llm_model="scripted",
                            artifact_root=str(tmp_path), labels_per_call=16, reuse_validated=False)
        store = ArtifactStore(str(tmp_path))
        records = [ContactRecord(id=f"C{i}", name=f"Person {i}", company="Acme", title=f"Program Manager {i}",
                                 created_date=date(2024, 1, 1)) for i in range(40)]
        chunk = write_chunk(store, chunk_key("run-1", "contacts", 0), [r.model_dump() for r in records])
        endpoint = resolve_endpoint(settings)
        task = ChunkTask(run_id="run-1", step="contacts/chunk-00000", branch="contacts", chunk=chunk, attempt=1,
                         feedback=[], reuse=False)
        output = await ActivityEnvironment().run(AnalyzerActivities(store, settings, endpoint).enrich_contact_chunk,
                                                 task)
        calls = llm.requests_for("run-1", agent="contact-enricher")
        assert [p.count('"id":') for p in (c.prompt for c in calls)] == [16, 16, 8]
        labelled = store.read_model(output.output, ContactChunkOutput).enrichments
        assert sorted(e.id for e in labelled) == sorted(r.id for r in records) and output.schema_error is None
        assert output.usage.calls == 3
        verdict = await ActivityEnvironment().run(
            ValidatorActivities(store, settings, endpoint).validate_contact_chunk,
            ValidationTask(run_id="run-1", step=task.step, attempt=1, output=output, ai_review_sample=0,
                           chunk=chunk))
        assert verdict.passed, verdict.failed_checks
    finally:
        llm.stop()
