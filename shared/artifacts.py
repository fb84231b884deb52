"""The artifact store: a directory shared by every service, addressed by keys.

Writes are atomic (temporary file, then rename), so a worker killed mid-write never leaves a half file for
the next attempt to read. A step's output is written once (``write_once``: a key unique to its attempt, refused if
it exists) and referenced with its sha256, which every read of it checks: what was validated is what is read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from shared.contracts import ArtifactRef

M = TypeVar("M", bound=BaseModel)


class ArtifactChanged(RuntimeError):
    """An artifact's bytes are not the ones its reference was made for."""


class ArtifactExists(RuntimeError):
    """A write-once key is taken: an attempt's output is never replaced."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

    def write_bytes(self, key: str, data: bytes, once: bool = False) -> ArtifactRef:
        """Write atomically; ``once``: refuse (``ArtifactExists``) if the key is taken, and return the reference
        with the data's sha256."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if once:
                try:
                    os.link(tmp, target)  # atomic and exclusive: fails if the key exists
                except FileExistsError:
                    raise ArtifactExists(f"artifact {key} exists already; an attempt's output is written once") \
                        from None
                finally:
                    Path(tmp).unlink(missing_ok=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ArtifactRef(key=key, sha256=sha256_of(data) if once else None)

    def read_bytes(self, ref: ArtifactRef | str) -> bytes:
        data = self.path(ref).read_bytes()
        if isinstance(ref, ArtifactRef) and ref.sha256 is not None and sha256_of(data) != ref.sha256:
            raise ArtifactChanged(f"artifact {ref.key} changed after it was written (sha256 {sha256_of(data)[:12]}…, "
                                  f"expected {ref.sha256[:12]}…); it is not the output that was validated")
        return data

    def write_model(self, key: str, model: BaseModel, once: bool = False) -> ArtifactRef:
        return self.write_bytes(key, model.model_dump_json().encode(), once=once)

    def read_model(self, ref: ArtifactRef | str, model_type: type[M]) -> M:
        return model_type.model_validate_json(self.read_bytes(ref))

    def exists(self, ref: ArtifactRef | str) -> bool:
        return self.path(ref).exists()
