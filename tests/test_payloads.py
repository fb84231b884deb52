"""Nothing that travels through Temporal grows with the export: ten times the chunks, the same largest payload."""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.protobuf.message import Message
from temporalio.client import Client

from client.cli import start_run
from deploy.scripted_model import ScriptedLlm
from tests.harness import ARTICLE, Stack
from tests.test_endings import write_contacts

BOUND = 64 * 1024


def largest_payload(message: Message) -> int:
    """The largest Payload anywhere in a history event (inputs, results, details, headers), as stored."""
    largest = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            items = [value]
        elif hasattr(value, "values") and callable(value.values):
            items = list(value.values())  # a map of messages
        else:
            items = list(value)  # a repeated field
        for item in items:
            if not isinstance(item, Message):
                continue
            if item.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
                largest = max(largest, item.ByteSize())
            else:
                largest = max(largest, largest_payload(item))
    return largest


async def largest_in_run(client: Client, run_id: str) -> tuple[int, int]:
    """The largest payload in the run's histories (parent and every batch), and the parent's event count."""
    largest, parent_events = 0, 0
    async for execution in client.list_workflows(f'WorkflowId = "{run_id}" OR WorkflowId STARTS_WITH "{run_id}."'):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        if execution.id == run_id:
            parent_events = len(history.events)
        largest = max([largest, *(largest_payload(e) for e in history.events)])
    return largest, parent_events


async def test_ten_times_the_chunks_leave_the_largest_payload_the_same(
        client: Client, stack: Stack, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    settings = stack.settings.model_copy(update={"contact_chunk_size": 1, "chunks_per_batch": 10,
                                                 "max_parallel_chunks": 10})
    sizes = {}
    for count in (6, 60):
        name = f"{run_id}-{count}"
        handle = await start_run(client, settings, write_contacts(tmp_path / f"c{count}.csv", count),
                                 ARTICLE / "crm_opportunities.csv", name)
        await asyncio.wait_for(handle.result(), 120)
        await asyncio.sleep(1.0)  # visibility catches up with the children
        sizes[count] = await largest_in_run(client, name)
    (small, small_events), (large, large_events) = sizes[6], sizes[60]
    print(f"largest payload: {small} bytes at 6 chunks, {large} at 60; parent events: {small_events}, "
          f"{large_events}")
    assert small > 1000 and large <= BOUND, f"largest payload {small} bytes at 6 chunks, {large} at 60"
    # a batch holds at most 10 chunks whatever the export: the largest payload does not grow with it
    assert large < small * 2.5, (small, large)
    assert large_events < small_events * 4, "the parent records one child per batch, not one event per chunk"
