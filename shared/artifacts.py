"""The artifact store: a directory shared by every service, addressed by keys.

Writes are atomic (temporary file, then rename), so a worker killed mid-write never leaves a half file for
the next attempt to read, and re-running a step overwrites its own deterministic key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from shared.contracts import ArtifactRef

M = TypeVar("M", bound=BaseModel)


class ArtifactStore:
    """Keys are relative POSIX paths below ``root``; ``file://`` URLs are accepted for the root."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        if text.startswith("file://"):
            text = text.removeprefix("file://")
        elif "://" in text:
            raise ValueError(f"artifact root {text!r}: only local paths and file:// URLs are supported")
        self.root = Path(text).expanduser().resolve()

    def path(self, ref: ArtifactRef | str) -> Path:
        key = ref.key if isinstance(ref, ArtifactRef) else ref
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"artifact key {key!r} escapes the store")
        return resolved

    def write_bytes(self, key: str, data: bytes) -> ArtifactRef:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ArtifactRef(key=key)

    def read_bytes(self, ref: ArtifactRef | str) -> bytes:
        return self.path(ref).read_bytes()

    def write_model(self, key: str, model: BaseModel) -> ArtifactRef:
        return self.write_bytes(key, model.model_dump_json().encode())

    def read_model(self, ref: ArtifactRef | str, model_type: type[M]) -> M:
        return model_type.model_validate_json(self.read_bytes(ref))

    def exists(self, ref: ArtifactRef | str) -> bool:
        return self.path(ref).exists()
