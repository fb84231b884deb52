"""``tollgate prune``: run artifacts have a retention (``TOLLGATE_RUN_RETENTION_DAYS``): a run's folder in the store
(its chunks, outputs, gate records and report) whose newest file is older than that is deleted, and so are reuse
entries and uploaded exports last written before it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.artifacts import ArtifactStore


@dataclass
class Pruned:
    runs: list[str]
    files: int


def _modified(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _files(store: ArtifactStore, prefix: str) -> dict[str, float]:
    """Every file below ``prefix``, with its last-modified time."""
    if store.remote:
        root = f"{store.base}/{prefix}"
        if not store.fs.exists(root):
            return {}
        found: dict[str, dict[str, Any]] = store.fs.find(root, detail=True)
        return {path.removeprefix(f"{store.base}/"): _modified(info) for path, info in found.items()}
    base = store.root / prefix
    if not base.exists():
        return {}
    return {str(p.relative_to(store.root)): p.stat().st_mtime for p in base.rglob("*") if p.is_file()}


def prune(store: ArtifactStore, older_than_days: float, dry_run: bool = False) -> Pruned:
    cutoff = time.time() - older_than_days * 86_400
    runs: dict[str, list[tuple[str, float]]] = {}
    for key, modified in _files(store, "runs").items():
        runs.setdefault(key.split("/")[1], []).append((key, modified))
    old_runs = sorted(run for run, files in runs.items() if max(m for _, m in files) < cutoff)
    doomed = [key for run in old_runs for key, _ in runs[run]]
    doomed += [key for prefix in ("reuse", "uploads") for key, modified in _files(store, prefix).items()
               if modified < cutoff]
    if not dry_run:
        for key in doomed:
            if store.remote:
                store.fs.rm_file(f"{store.base}/{key}")
            else:
                store.path(key).unlink(missing_ok=True)
    return Pruned(runs=old_runs, files=len(doomed))
