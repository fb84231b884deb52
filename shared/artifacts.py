"""The artifact store: where the uploaded exports, normalized chunks, step outputs and reports live, by key.

Selected by URL (``TOLLGATE_ARTIFACT_ROOT``): a local directory or ``file://`` URL for ``tollgate dev`` and tests,
or any fsspec URL, such as ``s3://bucket/prefix`` for MinIO or S3 (credentials from the standard AWS variables,
the endpoint from ``TOLLGATE_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``). Services read and write nothing else.

Local writes are atomic (temporary file, then rename), so a worker killed mid-write never leaves a half file for
the next attempt to read; an object store's put is atomic by itself. A step's output is written once
(``write_once``: a key unique to its attempt, refused if it exists) and referenced with its sha256, which every read
of it checks: what was validated is what is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel

from shared.contracts import ArtifactRef

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")
CHUNK = 1024 * 1024


class ArtifactChanged(RuntimeError):
    """An artifact's bytes are not the ones its reference was made for."""


class ArtifactExists(RuntimeError):
    """A write-once key is taken: an attempt's output is never replaced."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _checked_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in key:
        raise ValueError(f"artifact key {key!r} is not a relative key below the store")
    return key


class ArtifactStore:
    """Keys are relative POSIX paths below the store's root."""

    def __init__(self, root: str | Path, endpoint_url: str | None = None) -> None:
        text = str(root)
        self.remote = "://" in text and not text.startswith("file://")
        if self.remote:
            import fsspec

            options: dict[str, Any] = {}
            endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
            if text.startswith("s3://") and endpoint:
                options["client_kwargs"] = {"endpoint_url": endpoint}
            self.fs, base = fsspec.core.url_to_fs(text, **options)
            self.base = base.rstrip("/")
            self.url = text.rstrip("/")
            self.root = Path("/nonexistent")  # no local path: everything goes through the filesystem object
        else:
            self.root = Path(text.removeprefix("file://")).expanduser().resolve()
            self.url = self.root.as_uri()

    # --- addressing ------------------------------------------------------------------------------------------

    def path(self, ref: ArtifactRef | str) -> Path:
        """The local file behind a key (a local store only)."""
        if self.remote:
            raise ValueError(f"the store at {self.url} is not local; read artifacts through the store")
        # a checked key has no empty, '.' or '..' part and is relative: joined to the (resolved) root it names a
        # path below it. Not resolved again: the store holds the files it writes and no link, and resolving cost
        # a system call per part of the path on every read and write (a few percent of a chunk step's CPU)
        return self.root / _checked_key(ref.key if isinstance(ref, ArtifactRef) else ref)

    def _remote(self, ref: ArtifactRef | str) -> str:
        return f"{self.base}/{_checked_key(ref.key if isinstance(ref, ArtifactRef) else ref)}"

    def location(self, ref: ArtifactRef | str) -> str:
        """Where an artifact is, for a person: an absolute path, or the object's URL."""
        key = ref.key if isinstance(ref, ArtifactRef) else ref
        return f"{self.url}/{_checked_key(key)}" if self.remote else str(self.path(key))

    async def small(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Small store work from async code (a chunk's file read or an output written, its few hundred records parsed
        or dumped): on a local store done at once, as it takes a fraction of a millisecond and a hop to a worker
        thread and back cost about 86 us of CPU of its own, four a gated step (docs/benchmarks.md); on an object
        store on a worker thread, as every call waits on the network."""
        if self.remote:
            return await asyncio.to_thread(work, *args, **kwargs)
        return work(*args, **kwargs)

    # --- bytes ---------------------------------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, once: bool = False) -> ArtifactRef:
        """Write atomically (a reader sees the old file or the new one); ``once``: refuse (``ArtifactExists``) if the
        key is taken, and return the reference with the data's sha256."""
        if self.remote:
            target = self._remote(key)
            if once and self.fs.exists(target):
                raise ArtifactExists(f"artifact {key} exists already; an attempt's output is written once")
            self.fs.pipe_file(target, data)
            return ArtifactRef(key=key, sha256=sha256_of(data) if once else None)
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if once:
            # created exclusively where it belongs (one file operation, not three): a key written once is an
            # attempt's own, and it is read only through the reference returned here, whose sha256 a partial file
            # left by a crash would fail
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise ArtifactExists(f"artifact {key} exists already; an attempt's output is written once") from None
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return ArtifactRef(key=key, sha256=sha256_of(data))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ArtifactRef(key=key)

    def read_bytes(self, ref: ArtifactRef | str) -> bytes:
        data: bytes = self.fs.cat_file(self._remote(ref)) if self.remote else self.path(ref).read_bytes()
        if isinstance(ref, ArtifactRef) and ref.sha256 is not None and sha256_of(data) != ref.sha256:
            raise ArtifactChanged(f"artifact {ref.key} changed after it was written (sha256 {sha256_of(data)[:12]}…, "
                                  f"expected {ref.sha256[:12]}…); it is not the output that was validated")
        return data

    def write_model(self, key: str, model: BaseModel, once: bool = False) -> ArtifactRef:
        return self.write_bytes(key, model.model_dump_json().encode(), once=once)

    def read_model(self, ref: ArtifactRef | str, model_type: type[M]) -> M:
        return model_type.model_validate_json(self.read_bytes(ref))

    def exists(self, ref: ArtifactRef | str) -> bool:
        return bool(self.fs.exists(self._remote(ref))) if self.remote else self.path(ref).exists()

    # --- files -----------------------------------------------------------------------------------------------

    def upload(self, source: Path, prefix: str = "uploads") -> ArtifactRef:
        """Put a local file in the store under its content's digest: an identical file is stored once."""
        digest = file_sha256(source)
        key = f"{prefix}/{digest[:2]}/{digest}{source.suffix.lower()}"
        if not self.exists(key):
            if self.remote:
                self.fs.put_file(str(source), self._remote(key))
            else:
                target = self.path(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
                os.close(fd)
                try:
                    shutil.copyfile(source, tmp)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        return ArtifactRef(key=key, sha256=digest)

    @contextmanager
    def local_copy(self, ref: ArtifactRef, name: str) -> Iterator[Path]:
        """The artifact as a local file called ``name`` (so errors name the user's file), for readers that stream
        from a path: a link to the file in a local store, a temporary download from a remote one. Checked against
        the reference's sha256 either way."""
        with tempfile.TemporaryDirectory(prefix="tollgate-") as folder:
            path = Path(folder) / (Path(name).name or "export.csv")
            if self.remote:
                self.fs.get_file(self._remote(ref), str(path))
            else:
                path.symlink_to(self.path(ref))
            if ref.sha256 is not None and file_sha256(path) != ref.sha256:
                raise ArtifactChanged(f"artifact {ref.key} ({name}) is not the file that was uploaded "
                                      "(its sha256 differs)")
            yield path


def store_from(settings: Any) -> ArtifactStore:
    """The store the settings select."""
    return ArtifactStore(settings.artifact_root, getattr(settings, "s3_endpoint_url", None))
