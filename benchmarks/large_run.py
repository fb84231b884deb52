"""How big do the workflow histories get on a large export? Prints figures; asserts nothing.

Runs the full stack (Temporal dev server, the three services as processes, the scripted LLM so that model speed
does not dominate) over a generated export, then reads every history of the run.

    uv run python -m benchmarks.large_run --contacts 100000 --opportunities 20000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from client.cli import start_run
from shared.temporal import connect
from tests.harness import make_stack, start_temporal
from tests.scripted_llm import ScriptedLlm

TITLES = ["CEO", "CTO", "VP Sales", "Head of Engineering", "Engineer", "Account Executive", "Intern", ""]
STAGES = ["Prospecting", "Qualification", "Negotiation", "Closed Won", "Closed Lost"]


def write_export(folder: Path, contacts: int, opportunities: int) -> tuple[Path, Path]:
    rng = random.Random(1)
    contact_file, opportunity_file = folder / "contacts.csv", folder / "opportunities.csv"
    with contact_file.open("w") as out:
        out.write("id,name,company,title,created_date\n")
        for i in range(1, contacts + 1):
            out.write(f"{i},Person {i},Company {rng.randrange(contacts // 20 + 1)},{rng.choice(TITLES)},2024-01-01\n")
    with opportunity_file.open("w") as out:
        out.write("id,name,stage,amount,contact_id,close_date\n")
        for i in range(1, opportunities + 1):
            out.write(f"{i},Deal {i},{rng.choice(STAGES)},{rng.randrange(1000, 90000)},"
                      f"{rng.randrange(1, contacts + 1)},2024-06-30\n")
    return contact_file, opportunity_file


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contacts, opportunities = write_export(folder, args.contacts, args.opportunities)
        temporal, address = start_temporal(folder / "temporal.db")
        llm = ScriptedLlm().start()
        stack = make_stack(address, llm, folder, TOLLGATE_MAX_CONCURRENT_ACTIVITIES="16",
                           TOLLGATE_LLM_TIMEOUT_SECONDS="60", TOLLGATE_ANALYSIS_TIMEOUT_SECONDS="120",
                           TOLLGATE_VALIDATION_TIMEOUT_SECONDS="60", TOLLGATE_HEARTBEAT_TIMEOUT_SECONDS="30")
        try:
            client = await connect(stack.settings)
            settings = stack.settings.model_copy(update={"max_parallel_chunks": args.parallel})
            started = time.monotonic()
            handle = await start_run(client, settings, contacts, opportunities, "large-run")
            result = await handle.result()
            elapsed = time.monotonic() - started
            rows = []
            async for execution in client.list_workflows("WorkflowId STARTS_WITH 'large-run'"):
                history = await client.get_workflow_handle(execution.id).fetch_history()
                largest = max(
                    (p.ByteSize() for e in history.events
                     for p in [*e.activity_task_completed_event_attributes.result.payloads,
                               *e.activity_task_scheduled_event_attributes.input.payloads,
                               *e.child_workflow_execution_completed_event_attributes.result.payloads,
                               *e.workflow_execution_completed_event_attributes.result.payloads]),
                    default=0,
                )
                rows.append((execution.id, len(history.events), history.to_json().__len__(), largest))
            print(f"export: {args.contacts} contacts, {args.opportunities} opportunities; "
                  f"chunks of {settings.contact_chunk_size}; {args.parallel} chunks in flight per batch")
            print(f"wall time: {elapsed:.1f} s; LLM requests: {len(llm.requests)}; "
                  f"gated steps: {result.report.gates.gated_steps}")
            print(f"{'workflow':<40} {'events':>7} {'history JSON bytes':>19} {'largest payload':>16}")
            for row in sorted(rows, key=lambda r: -r[1])[:5]:
                print(f"{row[0]:<40} {row[1]:>7} {row[2]:>19,} {row[3]:>16,}")
            print(f"workflows: {len(rows)}; largest history: {max(r[1] for r in rows)} events "
                  f"(Temporal warns at 10,240 and stops at 51,200); largest payload {max(r[3] for r in rows):,} "
                  "bytes (limit 2 MB)")
        finally:
            stack.stop()
            llm.stop()
            temporal.terminate()
            temporal.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
