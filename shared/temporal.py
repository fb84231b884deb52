"""Temporal plumbing shared by every process: the client and the worker loop."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, TLSConfig
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig, WorkflowRunner

from shared.settings import Settings
from shared.telemetry import setup_tracing, shutdown_tracing, tracing_enabled

log = logging.getLogger("tollgate")


async def connect(settings: Settings, *, wait: float = 30.0) -> Client:
    """A client that carries the Pydantic contracts as JSON.

    A server that is still starting (or restarting) is waited for up to ``wait`` seconds, so services can start in
    any order; 0 tries once."""
    from shared.codec import data_converter, keyring_from

    converter = data_converter(pydantic_data_converter, keyring_from(settings))  # refuses to run without a key
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.1
    # Temporal's interceptor carries the trace context in workflow and activity headers, across processes.
    interceptors = [TracingInterceptor()] if tracing_enabled() else []
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                interceptors=interceptors,
                tls=tls_config(settings),
                api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
            )
        except RuntimeError:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to the Temporal frontend when asked for (or implied by a certificate or an API key)."""
    if not (settings.temporal_tls or settings.temporal_tls_cert or settings.temporal_api_key):
        return False
    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path else None

    return TLSConfig(server_root_ca_cert=read(settings.temporal_tls_ca), client_cert=read(settings.temporal_tls_cert),
                     client_private_key=read(settings.temporal_tls_key))


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker versioning, when a deployment name is set: this build of that deployment, auto-upgrade by default."""
    if not settings.worker_deployment:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=settings.worker_deployment, build_id=settings.worker_build_id),
        use_worker_versioning=True, default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE)


# The run and step an activity serves, set around each attempt (shared.activity_events), shown on its log lines.
current_step: contextvars.ContextVar[str] = contextvars.ContextVar("tollgate_step", default="")


def _where(record: logging.LogRecord) -> bool:
    record.where = f"[{where}] " if (where := current_step.get()) else ""
    return True


def _one_line_failures(record: logging.LogRecord) -> bool:
    """An activity that fails with an error of ours (a bad file, a spent retry) is one line that says why; the
    SDK's traceback is kept for what we did not foresee."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, asyncio.CancelledError):
        record.msg = f"{record.msg}: cancelled ({error})"
        record.exc_info = None
        record.exc_text = None
    elif isinstance(error, ApplicationError):
        record.msg = f"{record.msg}: {error.type}: {error.message}"
        record.exc_info = None
        record.exc_text = None
    return True


def configure_logging(service: str) -> None:
    """Logging for a service process, and its tracing when the environment asks for it."""
    from shared.settings import get_settings

    setup_tracing(get_settings(), service)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {service} %(levelname)s %(where)s%(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_where)
    activity.logger.logger.addFilter(_one_line_failures)
    # Agno logs every provider error at ERROR with a traceback; our activities report them once, as failures.
    logging.getLogger("agno").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The step is already in our messages; the SDK's dict of activity and workflow details only adds noise.
    activity.logger.activity_info_on_message = False
    from temporalio import workflow

    workflow.logger.workflow_info_on_message = False


# A step's heartbeats reach the server at most this often (the SDK's default is 80 % of the heartbeat timeout, 16 s):
# a cancel (a run cancelled, or a sibling that failed) reaches a step within this, and a step that waits for its
# cancellation (gate.run_step's wait_cancelled) waits no longer. One small call to the server a step in flight.
HEARTBEAT_SENT_EVERY = timedelta(seconds=2)


# The cyclic garbage collector's first threshold: allocations between collections of the youngest generation.
# Python's default (700) made a worker collect every few hundred model objects; a chunk step builds thousands (a
# record, a label, an entity each), and every third collection of the second generation walked the whole heap of
# the SDKs and the agent framework (docs/benchmarks.md).
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Before serving: what start-up built (modules, clients, the warm-up's objects) lives as long as the process,
    so the collector stops walking it (``gc.freeze``), and collects the young generation less often. Reference
    counting still frees what a step leaves at once; only cycles wait a little longer."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def serve(
    settings: Settings,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]] = (),
    workflows: Sequence[type] = (),
    announce_attempts: bool = False,
) -> None:
    """Poll one task queue until SIGINT or SIGTERM, then finish in-flight tasks and exit. With
    ``announce_attempts``, every failed or retried activity attempt is a progress event."""
    from shared.activity_events import ActivityEvents
    from shared.codec import KeyringError, keyring_from
    from shared.progress import ProgressPublisher

    try:
        client = await connect(settings)
    except KeyringError as error:
        log.error("%s", error)
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # a worker of analysis or validation steps announces their failed and retried attempts
    publisher = ProgressPublisher(settings.redis_url, buffer_size=settings.progress_buffer_size,
                                  keyring=keyring_from(settings)) if announce_attempts else None
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
        worker = Worker(
            client,
            task_queue=task_queue,
            activities=list(activities),
            workflows=list(workflows),
            activity_executor=pool,
            max_concurrent_activities=settings.max_concurrent_activities,
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
            interceptors=[ActivityEvents(publisher)] if publisher else [],
            deployment_config=deployment_config(settings),
            workflow_runner=workflow_runner(),
            max_heartbeat_throttle_interval=HEARTBEAT_SENT_EVERY,
        )
        settle_heap()
        async with worker:
            log.info("serving task queue %s at %s", task_queue, settings.temporal_address)
            alive = asyncio.create_task(_touch_while_running(settings.health_file, worker))
            await stop.wait()
            alive.cancel()
            log.info("stopping: in-flight activities get %.0f s to finish", settings.shutdown_grace_seconds)
    if publisher is not None:
        await publisher.close()
    shutdown_tracing()


def workflow_runner() -> WorkflowRunner:
    """How workflow code runs: outside Temporal's sandbox. The sandbox imports a workflow's module afresh for every
    workflow run and runs each activation, and the serialization of every payload, through ``exec`` of its own code:
    measured, about 40 ms of CPU for each new workflow and 30 % of the orchestrator's CPU besides
    (docs/benchmarks.md). Passing our modules through would remove the first cost but not the second, and would
    lift the sandbox's restrictions from our code all the same: the sandbox would then cost without guarding.
    So our workflow modules are held deterministic another way: statically (tests/test_determinism.py: allowed
    imports only, no module state, no clock, no randomness, no I/O) and by replaying recorded histories
    (tests/test_replay.py, with this same runner)."""
    return UnsandboxedWorkflowRunner()


HEALTH_EVERY = 5.0


async def _touch_while_running(health_file: Path | None, worker: Worker) -> None:
    """Keep the health file fresh while the worker polls; a stuck event loop or a worker that stopped lets it age."""
    if health_file is None:
        return
    while not worker.is_shutdown:
        await asyncio.to_thread(health_file.touch)
        await asyncio.sleep(HEALTH_EVERY)


def heartbeat_every(every: float = 1.0) -> Callable[..., None]:
    """A heartbeat for work that reports progress often (ingest, once a chunk, from a thread): passed on at most once
    every ``every`` seconds, the first ``every`` after the start, as ``heartbeating`` beats. Each beat from a thread
    wakes the worker's event loop: with a beat a chunk, ingest at 20,000/10,000 took about an eighth longer in the
    worker (docs/benchmarks.md)."""
    last = time.monotonic()

    def beat(*details: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every:
            last = now
            activity.heartbeat(*details)

    return beat


@asynccontextmanager
async def heartbeating(every: float = 1.0) -> AsyncIterator[None]:
    """Heartbeat while a long call runs, so a dead worker is noticed in seconds, not at the step's timeout.

    The first beat is ``every`` after the call begins, not at once: the SDK sends a step's first heartbeat to the
    server immediately (later ones at most every ``HEARTBEAT_SENT_EVERY``), and a call that ends within a second
    needs none. The heartbeat timeout counts from the step's start, so a worker that dies before its first beat is
    still noticed at it, and a cancel reaches a call within ``every`` plus that interval, as before.
    """

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            if not activity.in_activity():  # outside an activity (a benchmark calling a model) nobody is told
                return
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
