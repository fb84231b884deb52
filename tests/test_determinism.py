"""The workflow modules run outside Temporal's sandbox (shared/temporal.workflow_runner, for speed), so nothing stops
a clock read or an I/O call in them at run time: this holds them to determinism statically.
Workflow code may import only what is deterministic, keeps no module state, and calls no clock, no randomness and
no I/O (Temporal's own ``workflow.now()``, ``workflow.random()`` and activities are the way to those)."""

from __future__ import annotations

import ast
from importlib.util import find_spec
from pathlib import Path

import pytest

from services.orchestrator.workflows import SIDE_CHANNEL, WORKFLOW_MODULES

ALLOWED_IMPORTS = {
    "__future__", "asyncio", "contextlib", "collections.abc", "dataclasses", "functools", "typing", "datetime",
    "temporalio", "temporalio.common", "temporalio.exceptions", "temporalio.workflow", "pydantic",
    "shared", "shared.contracts", "shared.events", "shared.steps", "shared.failures", *WORKFLOW_MODULES,
    SIDE_CHANNEL,  # progress events to the worker's publisher, skipped on replay (its docstring says why that is safe)
}
FROM_DATETIME = {"timedelta"}  # a duration, never the current time
FORBIDDEN_CALLS = {"open", "print", "input", "hash", "breakpoint", "exec", "eval"}  # hash(str) differs per process
FORBIDDEN_ATTRIBUTES = {"now", "utcnow", "today", "fromtimestamp", "time_ns", "monotonic", "perf_counter", "sleep",
                        "getenv", "environ", "urandom", "uuid4", "uuid1", "random", "randint", "choice", "shuffle"}
ASYNCIO_SAFE = {"sleep"}  # asyncio.sleep in a workflow is a durable timer


def dotted(node: ast.expr) -> str:
    """``datetime.datetime`` for that expression; a call as ``name()``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func)}()"
    return "…"


def problems(source: str) -> list[str]:
    """What in ``source`` a workflow module must not do, one line each."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name not in ALLOWED_IMPORTS or a.name == "datetime"]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module not in ALLOWED_IMPORTS:
                found.append(f"imports from {node.module}")
            elif node.module == "datetime":
                found += [f"imports datetime.{a.name}" for a in node.names if a.name not in FROM_DATETIME]
        elif isinstance(node, ast.Global):
            found.append(f"declares global {', '.join(node.names)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"calls {node.func.id}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            owner = dotted(node.value)
            temporal = owner == "workflow" or owner.startswith("workflow.")  # the SDK's deterministic versions
            if not temporal and not (owner == "asyncio" and node.attr in ASYNCIO_SAFE):
                found.append(f"uses {owner}.{node.attr} at line {node.lineno}")
    return found


@pytest.mark.parametrize("module", WORKFLOW_MODULES)
def test_workflow_modules_make_no_non_deterministic_call(module: str) -> None:
    spec = find_spec(module)
    assert spec is not None and spec.origin is not None
    assert problems(Path(spec.origin).read_text()) == []


def test_the_check_tells_a_clock_read_from_the_workflow_clock() -> None:
    # each rejected line beside the close neighbour the check accepts
    assert problems("from temporalio import workflow\nx = workflow.now()\n") == []
    assert problems("import datetime\nx = datetime.datetime.now()\n") == [
        "imports datetime", "uses datetime.datetime.now at line 2"]
    assert problems("from datetime import timedelta\n") == []
    assert problems("from datetime import datetime\n") == ["imports datetime.datetime"]
    assert problems("import asyncio\nasync def f() -> None:\n    await asyncio.sleep(1)\n") == []
    assert problems("import time\ntime.sleep(1)\n") == ["imports time", "uses time.sleep at line 2"]
    assert problems("from shared.contracts import GateRecord\n") == []
    assert problems("from shared.progress import ProgressPublisher\n") == ["imports from shared.progress"]
    assert problems("from services.orchestrator.outbox import emit\n") == []
    assert problems("from services.orchestrator.progress import ProgressActivities\n") == [
        "imports from services.orchestrator.progress"]
    assert problems("x = sorted(names)\n") == []
    assert problems("x = hash(name)\n") == ["calls hash() at line 1"]
    assert problems("from temporalio import workflow\nx = workflow.random().random()\n") == []
    assert problems("import random\nx = random.random()\n") == ["imports random", "uses random.random at line 2"]
