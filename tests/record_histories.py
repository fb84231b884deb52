"""Re-record the workflow histories the replay tests replay (`make histories`), from real runs of the current code.

Run it on purpose, after a change to workflow code that is meant to change what new runs do (and only behind
``workflow.patched`` where running workflows must keep their path): the committed histories are what running
workflows look like, and the replay tests fail the build when workflow code can no longer replay them. It rewrites
``tests/histories/current``; keep the folder of a version whose runs may still be running under another name
(``tests/histories/v1-lists`` holds runs from before the gate manifests, ``v2-manifests`` runs from before the lean
hand-offs, ``v3-children`` runs from before a one-batch branch was gated in the run, ``v4-local-progress`` runs from
before progress left the local activities, ``v5-direct-progress`` runs from before a one-batch branch's gate records
went with the aggregation's request), and every folder is replayed.

    uv run python -m tests.record_histories
    uv run python -m tests.record_histories rounds   # the whole-rounds scenario alone
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError

from client.cli import start_run
from client.review import decide, waiting_steps
from deploy.scripted_model import ScriptedLlm
from shared.artifacts import store_from
from shared.settings import Settings
from shared.temporal import connect
from tests.harness import ARTICLE, Stack, make_stack, start_temporal

HISTORIES = Path(__file__).resolve().parent / "histories" / "current"
CONTACTS, DEALS = ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv"


async def _run(client: Client, settings: Settings, run_id: str,
               meanwhile: Callable[[], Awaitable[None]] | None = None) -> None:
    handle = await start_run(client, settings, CONTACTS, DEALS, run_id)
    if meanwhile is not None:
        await meanwhile()
    with contextlib.suppress(WorkflowFailureError):  # a scenario that ends in failure is recorded as it ended
        await asyncio.wait_for(handle.result(), 120)


async def _save(client: Client, run_id: str, scenario: str) -> list[Path]:
    """The run's history and its batches' (a branch of several batches has a child workflow for each)."""
    written = []
    await asyncio.sleep(1.0)  # visibility lists the children a moment after they close
    children = sorted([w.id async for w in client.list_workflows(f"WorkflowId STARTS_WITH '{run_id}.'")])
    for workflow_id in (run_id, *children):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        kind = "run" if workflow_id == run_id else workflow_id.split(".", 1)[1].replace(".", "-")
        path = HISTORIES / f"{scenario}.{kind}.json"
        path.write_text(history.to_json())
        written.append(path)
    return written


async def record() -> list[Path]:
    HISTORIES.mkdir(exist_ok=True)
    llm = ScriptedLlm().start()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        temporal, address = start_temporal(work / "temporal.db")
        stack: Stack = make_stack(address, llm, work, TOLLGATE_ENCRYPT_PAYLOADS="false")
        written: list[Path] = []
        try:
            client = await connect(stack.settings)
            base = stack.settings.model_copy(update={"contact_chunk_size": 3, "gate_attempts": 2})

            written += [*await _run_and_save(client, base, "clean")]
            llm.script("h-rejected", "contacts/chunk-00000", "validator", ["ai_reject", "correct"])
            llm.script("h-rejected", "insights", "insights", ["wrong_figure", "correct"])
            written += await _run_and_save(client, base, "rejected-then-fixed", "h-rejected")
            llm.script("h-spent", "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
            written += await _run_and_save(client, base, "budget-spent", "h-spent")
            llm.script("h-quarantine", "contacts/chunk-00000", "contact-enricher", ["invent_ids"])
            written += await _run_and_save(client, base.model_copy(update={"on_spent": "quarantine"}), "quarantine",
                                           "h-quarantine")
            llm.script("h-review", "contacts/chunk-00000", "contact-enricher", ["invent_ids"])

            async def approve() -> None:
                deadline = time.monotonic() + 60
                while not (pending := await waiting_steps(client, "h-review")):
                    assert time.monotonic() < deadline, "no step waited for review"
                    await asyncio.sleep(0.3)
                await decide(client, store_from(base), pending[0], "quarantine", "recorder", "recorded", None)

            await _run(client, base.model_copy(update={"on_spent": "review"}), "h-review", approve)
            written += await _save(client, "h-review", "review-decided")

            llm.script("h-crash", "contacts/chunk-00000", "contact-enricher", ["slow:2", "correct"])

            async def crash() -> None:
                await asyncio.sleep(1.0)
                stack.kill("analyzer")
                stack.start("analyzer")

            await _run(client, base, "h-crash", crash)
            written += await _save(client, "h-crash", "analyzer-crash")
            # the contacts in two batches: each a child workflow, as a large export's are
            written += await _run_and_save(client, base.model_copy(update={"chunks_per_batch": 1}), "batched")
            written += await rounds(client, base)
        except BaseException:
            print(stack.log_text()[-4000:], file=sys.stderr)
            raise
        finally:
            stack.stop()
            temporal.terminate()
            temporal.wait(10)
            llm.stop()
    return written


async def rounds(client: Client, base: Settings) -> list[Path]:
    """Five contact chunks, three a batch at most, two in flight: batches of whole rounds (2, 2, 1), not 3 and 2."""
    return await _run_and_save(client, base.model_copy(update={"contact_chunk_size": 1, "chunks_per_batch": 3,
                                                               "max_parallel_chunks": 2}), "rounds")


async def record_rounds() -> list[Path]:
    """The rounds scenario alone, beside the histories already recorded (`python -m tests.record_histories
    rounds`): recorded with the version that added the patch, without re-recording the rest."""
    llm = ScriptedLlm().start()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        temporal, address = start_temporal(work / "temporal.db")
        stack: Stack = make_stack(address, llm, work, TOLLGATE_ENCRYPT_PAYLOADS="false")
        try:
            client = await connect(stack.settings)
            return await rounds(client, stack.settings.model_copy(update={"contact_chunk_size": 3,
                                                                           "gate_attempts": 2}))
        finally:
            stack.stop()
            temporal.terminate()
            temporal.wait(10)
            llm.stop()


async def _run_and_save(client: Client, settings: Settings, scenario: str, run_id: str | None = None) -> list[Path]:
    run_id = run_id or f"h-{scenario}"
    await _run(client, settings, run_id)
    return await _save(client, run_id, scenario)


def main() -> None:
    paths = asyncio.run(record_rounds() if sys.argv[1:] == ["rounds"] else record())
    print("\n".join(str(p.relative_to(Path.cwd())) for p in paths), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
