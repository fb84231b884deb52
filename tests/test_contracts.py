"""Contracts are read tolerantly: a payload from a newer worker (an extra field) and one from an older worker (a field
added since, with its default) both decode; a required field missing is still an error."""

from __future__ import annotations

import inspect

import pydantic
import pytest

from shared import contracts, events
from shared.contracts import Contract, GateRecord, StepOutput


def every_contract() -> list[type[Contract]]:
    found = [c for module in (contracts, events) for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, Contract) and c is not Contract]
    assert len(found) > 40
    return found


@pytest.mark.parametrize("contract", every_contract(), ids=lambda c: c.__name__)
def test_every_contract_ignores_fields_it_does_not_know(contract: type[Contract]) -> None:
    assert contract.model_config.get("extra") == "ignore", contract


def test_a_newer_payload_decodes_and_an_older_one_gets_the_defaults() -> None:
    newer = ('{"step": "s", "attempt": 1, "output": {"key": "k", "sha256": "ab", "region": "eu"}, "records": 2, '
             '"confidence": 0.9}')
    decoded = StepOutput.model_validate_json(newer)
    assert decoded.output.key == "k" and decoded.records == 2
    older = '{"step": "s", "attempts": 1, "passed": true, "accepted_output": {"key": "k"}}'
    record = GateRecord.model_validate_json(older)  # written before outcome, reviews, chunk existed
    assert record.outcome == "passed" and record.reviews == [] and record.chunk is None
    with pytest.raises(pydantic.ValidationError, match="records"):
        StepOutput.model_validate_json('{"step": "s", "attempt": 1, "output": {"key": "k"}}')
