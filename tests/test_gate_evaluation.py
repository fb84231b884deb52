"""The gate's own measurement, asserted: the evaluation command's figures on the hand-labelled sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.gates import accuracy, evaluate, ground_truth, main, measure_judge
from deploy.scripted_model import ScriptedLlm
from tests.harness import ROOT


def test_every_rule_checkable_error_is_caught_and_no_correct_output_is_rejected() -> None:
    result = evaluate()
    totals = result.totals()
    assert totals["false_rejections"] == 0, result.false_rejection_reasons
    assert totals["correct_outputs"] >= 18
    assert totals["rule_checkable"] >= 150 and totals["rule_checkable_share"] == 1.0
    for error_class in result.classes:
        assert error_class.cases > 0, error_class.name
        assert error_class.rule_checkable_caught == error_class.rule_checkable, error_class.name
    # what the rules cannot see is judgement (the AI layer's): it exists, and it is counted, not hidden
    assert totals["caught"] < totals["injected"]
    assert totals["records_settled_in_code"] > 100


def test_the_command_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gates.json"
    assert main(["--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| wrong seniority step |" in printed and "rule-checkable errors caught:" in printed
    assert '"rule_checkable_share": 1.0' in out.read_text()


def test_accuracy_scores_a_run_against_the_ground_truth(tmp_path: Path) -> None:
    truth = ground_truth(ROOT / "examples" / "data" / "sample" / "ground_truth_contacts.csv")
    ids = sorted(truth)[:4]
    rows = [
        {"id": ids[0], "seniority": truth[ids[0]][0], "department": truth[ids[0]][1],
         "decision_maker": truth[ids[0]][2]},
        {"id": ids[1], "seniority": "unknown" if truth[ids[1]][0] != "unknown" else "mid",
         "department": truth[ids[1]][1], "decision_maker": truth[ids[1]][2]},
    ]
    path = tmp_path / "enrichments.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"id": "x", "risk": "low"}\n')
    scored = accuracy(path.read_text(), truth)
    assert scored["contacts"] == 2 and scored["seniority"] == 0.5 and scored["department"] == 1.0


async def test_the_ai_layer_is_measured_through_the_real_client_path(
        scripted_llm: ScriptedLlm, monkeypatch: pytest.MonkeyPatch) -> None:
    # the scripted judge finds nothing by construction: what the rules missed stays missed, nothing correct is
    # rejected, and every review went over HTTP to the judge
    monkeypatch.setenv("TOLLGATE_LLM_PROVIDER", "openai-compatible")
    monkeypatch.setenv("TOLLGATE_LLM_BASE_URL", scripted_llm.base_url)
    monkeypatch.setenv("TOLLGATE_LLM_MODEL", "scripted")
    result = evaluate()
    await measure_judge(result)
    assert result.judge["missed_by_rules"] == len(result.missed_by_rules) > 0
    assert result.judge["caught"] == 0 and result.judge["false_rejections"] == 0
    reviews = scripted_llm.requests_for("gate-eval", agent="validator")
    assert 0 < len(reviews) <= len(result.missed_by_rules) + len(result.correct)
    assert any("insights/" in r.step for r in reviews)
