"""The answer schemas are written as data (shared/answer_schema.py) for speed; a model must receive exactly the
schema pydantic and Agno would have made of the same contract, key for key and in the same order (the order of
properties is the order a grammar-constrained model writes them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

import pytest
from agno.utils.models.schema_utils import get_response_schema_for_provider
from pydantic import BaseModel, Field, create_model

from services.analyzer.agents import (
    RATIONALE_CHARS,
    contact_request_schema,
    insights_request_schema,
    opportunity_request_schema,
)
from services.validator.judge import MAX_PROBLEMS, judgement_schema
from shared.contracts import ClaimKind, Department, RiskLevel, Seniority


def _one_of(values: Sequence[str]) -> Any:
    return Literal[tuple(values)]


def _text(max_length: int, min_length: int = 1) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=max_length)]


def pydantic_contacts(ids: Sequence[str]) -> type[BaseModel]:
    label = create_model(
        "ContactLabel", id=(_one_of(ids), ...),
        seniority=(_one_of([s for s in get_args(Seniority) if s != "unknown"]), ...),
        department=(_one_of([d for d in get_args(Department) if d != "unknown"]), ...),
        decision_maker=(bool, ...), rationale=(_text(RATIONALE_CHARS), ...))
    return create_model("ContactLabels", contacts=(
        Annotated[list[label], Field(min_length=len(ids), max_length=len(ids))], ...))


def pydantic_opportunities(ids: Sequence[str]) -> type[BaseModel]:
    label = create_model("OpportunityLabel", id=(_one_of(ids), ...), risk=(RiskLevel, ...),
                         reason=(_text(RATIONALE_CHARS), ...), next_action=(_text(60, 0), ...))
    return create_model("OpportunityLabels", opportunities=(
        Annotated[list[label], Field(min_length=len(ids), max_length=len(ids))], ...))


def pydantic_insights(fact_ids: Sequence[str]) -> type[BaseModel]:
    insight = create_model(
        "Insight", title=(_text(60), ...), text=(_text(200), ...), kind=(ClaimKind, ...),
        facts=(Annotated[list[_one_of(fact_ids)], Field(min_length=1, max_length=3)], ...),  # type: ignore[arg-type,misc]
        entity=(Annotated[str, Field(max_length=60)] | None, ...))
    return create_model("InsightAnswers", insights=(
        Annotated[list[insight], Field(min_length=3, max_length=4)], ...))


def pydantic_judgement(ids: Sequence[str]) -> type[BaseModel]:
    problem = create_model("Problem", id=(_one_of(ids), ...), reason=(_text(100), ...))
    return create_model("Judgement", problems=(
        Annotated[list[problem], Field(max_length=MAX_PROBLEMS)], ...))


def as_agno_sends(model: type[BaseModel]) -> dict[str, Any]:
    """The response_format Agno's OpenAI model sends for a pydantic output schema."""
    return {"type": "json_schema", "json_schema": {
        "name": model.__name__, "schema": get_response_schema_for_provider(model, "openai"), "strict": True}}


@pytest.mark.parametrize("ids", [["C1"], ["C1", "C2"], [f"C{n}" for n in range(40)]])
def test_each_schema_is_the_one_pydantic_would_make(ids: list[str]) -> None:
    pairs = [(contact_request_schema(ids), pydantic_contacts(ids)),
             (opportunity_request_schema(ids), pydantic_opportunities(ids)),
             (insights_request_schema(ids), pydantic_insights(ids)),
             (judgement_schema(ids), pydantic_judgement(ids))]
    for written, model in pairs:
        assert json.dumps(written) == json.dumps(as_agno_sends(model))


def test_a_different_id_set_is_a_different_schema() -> None:
    # the neighbour: the same shape over other ids must not compare equal, or the check above proves nothing
    written = json.dumps(contact_request_schema(["C1", "C2"]))
    assert written != json.dumps(as_agno_sends(pydantic_contacts(["C1", "C3"])))
    assert written != json.dumps(as_agno_sends(pydantic_contacts(["C1"])))
