"""Reuse of validated work: a step's accepted output, found again by what determines it.

An analysis output depends on its input rows, the prompts and labelling rules, the model and its sampling
settings, and the gate that accepted it on the validator's rules. The reuse key is a digest of all of them, so a
new run over the same export (or one that changed in a few chunks) finds every unchanged step's validated output
and calls the model only for the rest. Change a prompt, a rule, the model or its seed and nothing matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.artifacts import ArtifactStore
from shared.contracts import ArtifactRef, Contract

# Bump when the validator's checks change in a way that would reject outputs they accepted before; the analyzer's
# prompts and the shared taxonomy are digested from their source, so an edit there needs no bump.
GATE_RULES_VERSION = "2026-12-01"

_ROOT = Path(__file__).resolve().parents[1]
_SOURCES = ("shared/taxonomy.py", "services/analyzer/agents.py", "shared/contracts.py")


def _sources_digest() -> str:
    digest = hashlib.sha256(GATE_RULES_VERSION.encode())
    for name in _SOURCES:
        path = _ROOT / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


SOURCES_DIGEST = _sources_digest()


class ReuseEntry(Contract):
    """A validated output and where it was validated."""

    run_id: str
    step: str
    output: ArtifactRef
    records: int


def reuse_key(kind: str, content: bytes, model: str, seed: int) -> str:
    """The digest of everything an output depends on."""
    digest = hashlib.sha256()
    for part in (kind.encode(), SOURCES_DIGEST.encode(), model.encode(), str(seed).encode(), content):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def entry_key(key: str) -> str:
    return f"reuse/{key[:2]}/{key}.json"


def find(store: ArtifactStore, key: str) -> ReuseEntry | None:
    """The validated output recorded under ``key``, if it is still there and still the bytes validated."""
    if not store.exists(entry_key(key)):
        return None
    try:
        entry = store.read_model(entry_key(key), ReuseEntry)
        store.read_bytes(entry.output)  # checks the sha256
    except (OSError, ValueError, RuntimeError):
        return None
    return entry


def record(store: ArtifactStore, key: str, entry: ReuseEntry) -> None:
    store.write_model(entry_key(key), entry)
