"""Fixtures: a real Temporal dev server, a scripted LLM server, and the three services as worker processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from deploy.scripted_model import ScriptedLlm
from shared.settings import get_settings
from shared.temporal import connect
from tests.harness import Stack, free_port, make_stack, start_redis, start_temporal


@pytest.fixture(scope="session", autouse=True)
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's own Redis on a free port, whether or not the machine runs one; every process a test starts
    (and ``get_settings()`` in this one) finds it through TOLLGATE_REDIS_URL."""
    port = free_port()
    process = start_redis(port, tmp_path_factory.mktemp("redis"))
    url = f"redis://127.0.0.1:{port}/0"
    previous = os.environ.get("TOLLGATE_REDIS_URL")
    os.environ["TOLLGATE_REDIS_URL"] = url
    get_settings.cache_clear()
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("TOLLGATE_REDIS_URL", None)
        else:
            os.environ["TOLLGATE_REDIS_URL"] = previous
        get_settings.cache_clear()
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, address = start_temporal(tmp_path_factory.mktemp("temporal") / "temporal.db")
    try:
        yield address
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[ScriptedLlm]:
    server = ScriptedLlm().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(temporal_address: str, scripted_llm: ScriptedLlm, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    running = make_stack(temporal_address, scripted_llm, tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    yield await connect(stack.settings)


@pytest.fixture
def run_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"
