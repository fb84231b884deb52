"""The package boundaries each image relies on: a service imports only ``shared/`` and itself, ``shared/`` imports
no service, and nothing the services run imports the client; the client reaches services only by name."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness import ROOT

OURS = ("services", "shared", "client", "deploy", "benchmarks", "tests", "examples")


def our_imports(folder: Path) -> dict[str, set[str]]:
    """For each module below ``folder``, the project modules it imports (top two name parts)."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = {".".join(n.split(".")[:2]) for n in names if n.split(".")[0] in OURS}
    return found


def test_each_service_imports_only_shared_and_itself() -> None:
    for service in ("orchestrator", "analyzer", "validator"):
        for module, imported in our_imports(ROOT / "services" / service).items():
            strangers = {n for n in imported if not n.startswith(("shared", f"services.{service}"))
                         and n != "services"}
            assert not strangers, f"{module} imports {strangers}"


def test_shared_imports_no_service_and_no_client() -> None:
    for module, imported in our_imports(ROOT / "shared").items():
        assert all(n.startswith("shared") for n in imported), f"{module} imports {imported}"


def test_the_client_imports_no_service() -> None:
    for module, imported in our_imports(ROOT / "client").items():
        assert not {n for n in imported if n.startswith("services")}, f"{module} imports {imported}"


def test_benchmarks_run_public_code_not_the_test_harness() -> None:
    for module, imported in our_imports(ROOT / "benchmarks").items():
        assert not {n for n in imported if n.startswith("tests")}, f"{module} imports {imported}"
