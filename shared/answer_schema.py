"""The JSON Schema a model's answer must follow, written as data.

A schema is built for every call: it names the ids of the records asked (or the facts a finding may cite) and the
exact number of answers, so a grammar-constrained model cannot skip or invent one. Building it through pydantic
(``create_model``, then ``model_json_schema``) cost about 8 ms of CPU a call, half of a call's cost in the worker
(docs/benchmarks.md); these helpers write the same schema directly, key for key (tests/test_answer_schema.py holds
them to what pydantic generates), and ``response_format`` wraps it as the OpenAI API and llama.cpp's server take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def _typed(schema: Schema, name: str | None, kind: str) -> Schema:
    """``schema`` with its title (a field's name, as pydantic writes it) and its type, in pydantic's key order."""
    if name is not None:
        schema["title"] = _title(name)
    schema["type"] = kind
    return schema


def choice(values: Sequence[str], name: str | None = None) -> Schema:
    """One of ``values`` (a constant when there is only one)."""
    return _typed({"const": values[0]} if len(values) == 1 else {"enum": list(values)}, name, "string")


def text(name: str | None = None, *, max_length: int, min_length: int | None = None) -> Schema:
    bounds = {"maxLength": max_length, **({} if min_length is None else {"minLength": min_length})}
    return _typed(bounds, name, "string")


def optional_text(name: str, *, max_length: int) -> Schema:
    """A bounded string or null."""
    return {"anyOf": [text(max_length=max_length), {"type": "null"}], "title": _title(name)}


def boolean(name: str) -> Schema:
    return {"title": _title(name), "type": "boolean"}


def array(name: str | None, items: Schema, *, max_items: int, min_items: int | None = None) -> Schema:
    bounds = {"maxItems": max_items, **({} if min_items is None else {"minItems": min_items})}
    return _typed({"items": items, **bounds}, name, "array")


def obj(title: str, fields: dict[str, Schema]) -> Schema:
    """An object with every field required, in the order given (the order a grammar makes the model write them)."""
    return {"properties": fields, "required": list(fields), "title": title, "type": "object",
            "additionalProperties": False}


def list_answer(title: str, field: str, item: Schema, *, max_items: int, min_items: int | None = None) -> Schema:
    """An answer that is one list of ``item`` objects under ``field``."""
    return {
        "$defs": {item["title"]: item},
        **obj(title, {field: array(field, {"$ref": f"#/$defs/{item['title']}"}, max_items=max_items,
                                   min_items=min_items)}),
    }


def response_format(schema: Schema) -> Schema:
    """The ``response_format`` of a chat completion that must follow ``schema`` strictly."""
    return {"type": "json_schema", "json_schema": {"name": schema["title"], "schema": schema, "strict": True}}
