"""`make bench`: what durability and the gates cost, measured against the model's own time. Prints a table and
writes JSON (benchmarks/results.json); figures, not timed tests.

It starts what it needs through the client's own launcher (``client.devstack.DevStack``: a Temporal dev server, a
Redis, the three services as processes) and an OpenAI-compatible model server whose every answer takes a fixed
latency, so the LLM's share of a run is known exactly: the **LLM time** of a run is the wall time during which at
least one model call was in flight, and the **overhead** is wall time / LLM time (1.00x: nothing but the model).

    uv run python -m benchmarks                 # the default set (about 2 minutes)
    uv run python -m benchmarks --large         # also 100,000 contacts / 50,000 opportunities (several minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from benchmarks.floor import Floor, noop
from client.cli import start_run
from client.devstack import DevStack
from shared.settings import Settings
from shared.temporal import connect
from tests.scripted_llm import Request, ScriptedLlm

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = ROOT / "examples" / "data" / "article"
RESULTS = ROOT / "benchmarks" / "results.json"
TITLES = ("Engineering Manager", "Program Manager", "Sales Manager", "Product Manager", "Account Executive",
          "Marketing Manager")
STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost")


class Figures(list["Figure"]):
    """The figures so far, each printed as it is measured (a long benchmark shows its progress)."""

    def append(self, figure: Figure) -> None:
        super().append(figure)
        print(f"{figure.name}: {figure.value:.2f} {figure.unit} ({figure.detail})", file=sys.stderr, flush=True)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str
    detail: str = ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def export(folder: Path, contacts: int, deals: int, seed: int = 7) -> tuple[Path, Path]:
    """A generated export: contacts at 40 companies with titles the rules leave to the model, deals on them."""
    rng = random.Random(seed)
    c, o = folder / f"contacts-{contacts}.csv", folder / f"deals-{deals}.csv"
    with c.open("w") as out:
        out.write("id,name,company,title,created_date\n")
        for i in range(1, contacts + 1):
            out.write(f"C{i},Person {i},Company {i % 40},{rng.choice(TITLES)},2024-01-{1 + i % 28:02d}\n")
    with o.open("w") as out:
        out.write("id,name,stage,amount,contact_id,close_date\n")
        for i in range(1, deals + 1):
            owner = rng.randrange(1, contacts + 1)
            out.write(f"O{i},Deal {i},{rng.choice(STAGES)},{rng.randrange(1, 200) * 1000},C{owner},2024-06-30\n")
    return c, o


def busy_seconds(requests: list[Request], start: float, end: float) -> float:
    """Wall time within [start, end] during which at least one model call was in flight."""
    spans = sorted((max(r.received, start), min(r.answered or end, end)) for r in requests)
    total, cursor = 0.0, start
    for begin, finish in spans:
        begin = max(begin, cursor)
        if finish > begin:
            total += finish - begin
            cursor = finish
    return total


def peak_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB; 0 where /proc does not say."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def branch_phase(requests: list[Request], run_id: str) -> float:
    """From the first model call of either branch to the end of the last (the insights step excluded)."""
    mine = [r for r in requests if r.run == run_id and r.step.startswith(("contacts/", "opportunities/"))]
    return max(r.answered for r in mine) - min(r.received for r in mine)


@contextlib.contextmanager
def stack(folder: Path, llm: ScriptedLlm, analyzers: int = 1, **settings: Any) -> Iterator[tuple[DevStack, Settings]]:
    port = free_port()
    configured = Settings(
        temporal_address=f"127.0.0.1:{port}", temporal_ui_url=f"http://127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0", artifact_root=str(folder / "artifacts"),
        llm_provider="openai-compatible", llm_base_url=llm.base_url, llm_model="scripted",
        payload_key_file=folder / "keys.json", reuse_validated=False, on_spent="fail", **settings)
    env = {"TOLLGATE_LLM_PROVIDER": "openai-compatible", "TOLLGATE_LLM_BASE_URL": llm.base_url,
           "TOLLGATE_LLM_MODEL": "scripted", "TOLLGATE_REUSE_VALIDATED": "false",
           "TOLLGATE_MAX_CONCURRENT_ACTIVITIES": str(configured.max_concurrent_activities)}
    with open(os.devnull, "w") as quiet:
        dev = DevStack(configured, analyzers=analyzers, state_dir=folder / "state", extra_env=env, out=quiet,
                       echo=False)
        dev.start()
        try:
            yield dev, configured.model_copy(update={"payload_key_file": Path(dev._env()["TOLLGATE_PAYLOAD_KEY_FILE"])})
        finally:
            dev.stop()


async def timed_run(client: Client, settings: Settings, llm: ScriptedLlm, contacts: Path, deals: Path,
                    run_id: str) -> tuple[float, float, int]:
    """Wall time, LLM time and calls of one run."""
    start = time.monotonic()
    handle = await start_run(client, settings, contacts, deals, run_id)
    await handle.result()
    end = time.monotonic()
    mine = [r for r in llm.requests if r.run == run_id]
    return end - start, busy_seconds(mine, start, end), len(mine)


async def floor(client: Client, count: int) -> float:
    """The dev server's own floor: bare activities a second, 16 in flight, one worker in this process."""
    queue = f"bench-floor-{os.getpid()}"
    async with Worker(client, task_queue=queue, workflows=[Floor], activities=[noop]):
        start = time.monotonic()
        await client.execute_workflow("BenchFloor", count, id=f"floor-{time.time_ns()}", task_queue=queue)
        return count / (time.monotonic() - start)


async def measure(args: argparse.Namespace, folder: Path) -> list[Figure]:
    figures = Figures()
    llm = ScriptedLlm(latency=args.latency).start()
    article = (ARTICLE / "crm_contacts.csv", ARTICLE / "crm_opportunities.csv")
    mid = export(folder, 2000, 1000)
    try:
        with stack(folder / "a", llm, contact_chunk_size=200, opportunity_chunk_size=200,
                   max_parallel_chunks=4) as (_dev, settings):
            client = await connect(settings)
            wall, busy, calls = await timed_run(client, settings, llm, *article, "first")
            figures.append(Figure("overhead, 5/4 example, first run after start", wall / busy, "x", "<= 1.2x",
                                  f"{wall:.2f} s wall, {busy:.2f} s LLM, {calls} calls"))
            ratios = []
            for n in range(3):
                wall, busy, calls = await timed_run(client, settings, llm, *article, f"warm-{n}")
                ratios.append((wall / busy, wall, busy, calls))
            best = sorted(ratios)[1]
            figures.append(Figure("overhead, 5/4 example, warm (median of 3)", best[0], "x", "<= 1.05x",
                                  f"{best[1]:.2f} s wall, {best[2]:.2f} s LLM, {best[3]} calls"))
            wall, busy, calls = await timed_run(client, settings, llm, *mid, "mid")
            figures.append(Figure("overhead, 2,000/1,000 export (16 gated steps, 4 in flight)", wall / busy, "x",
                                  "<= 1.05x", f"{wall:.2f} s wall, {busy:.2f} s LLM, {calls} calls"))
            sequential = settings.model_copy(update={"max_parallel_chunks": 1})
            wall_seq, _busy, _ = await timed_run(client, sequential, llm, *mid, "mid-sequential")
            figures.append(Figure("parallelism: 4 chunks in flight vs 1", wall / wall_seq, "x", "<= 0.55x",
                                  f"{wall:.2f} s vs {wall_seq:.2f} s"))
            # two equal branches: as many deals as contacts, one chunk each, at once against one after the other
            equal = export(folder, 200, 200, seed=3)
            one_chunk = settings.model_copy(update={"max_parallel_chunks": 1})
            both, _b, _ = await timed_run(client, one_chunk, llm, *equal, "branches-parallel")
            apart, _a, _ = await timed_run(client, one_chunk.model_copy(update={"sequential_branches": True}), llm,
                                           *equal, "branches-sequential")
            phase = {name: branch_phase(llm.requests, name) for name in ("branches-parallel", "branches-sequential")}
            figures.append(Figure("parallelism: two equal branches at once vs one after the other (branch phase)",
                                  phase["branches-parallel"] / phase["branches-sequential"], "x", "<= 0.55x",
                                  f"{phase['branches-parallel']:.2f} s vs {phase['branches-sequential']:.2f} s from "
                                  f"the first branch call to the last; whole runs {both:.2f} s vs {apart:.2f} s, "
                                  "both with the same insights step"))
        llm.latency = 0.0
        big = export(folder, args.throughput_contacts, args.throughput_contacts // 2)
        with stack(folder / "b", llm, contact_chunk_size=200, opportunity_chunk_size=200, max_parallel_chunks=16,
                   max_concurrent_activities=16, ai_review_sample=0) as (dev, settings):
            client = await connect(settings)
            steps = -(-args.throughput_contacts // 200) + -(-(args.throughput_contacts // 2) // 200) + 1
            start = time.monotonic()
            handle = await start_run(client, settings, *big, "throughput")
            await handle.result()
            elapsed = time.monotonic() - start
            bare = await floor(client, steps * 2)
            figures.append(Figure("throughput, no model latency: gated steps a second", steps / elapsed, "steps/s",
                                  "at least half the floor", f"{steps} gated steps in {elapsed:.1f} s; the dev "
                                  f"server's floor here: {bare:.0f} bare activities/s"))
            figures.append(Figure("throughput against the floor (2 activities per gated step)",
                                  2 * steps / elapsed / bare, "x", ">= 0.5x"))
            peaks = {c.name: peak_mb(c.process.pid) for c in dev.children if c.process is not None}
            figures.append(Figure("peak memory of the largest process in that run", max(peaks.values()), "MB",
                                  "< 500 MB each", ", ".join(f"{name} {mb:.0f}" for name, mb in peaks.items())))
        if args.extended:
            await extended(args, folder, llm, figures)
    finally:
        llm.stop()
    return figures


async def extended(args: argparse.Namespace, folder: Path, llm: ScriptedLlm, figures: Figures) -> None:
    """Worker scaling (1, 2, 4 analyzers, no model latency) and the cost of a crash (kill -9 of the analyzer in the
    middle of a run at 0.5 s a call)."""
    work = export(folder, 20_000, 10_000, seed=11)
    llm.latency = 0.0
    walls = {}
    for analyzers in (1, 2, 4):
        with stack(folder / f"s{analyzers}", llm, contact_chunk_size=200, opportunity_chunk_size=200,
                   max_parallel_chunks=16, max_concurrent_activities=8, ai_review_sample=0,
                   analyzers=analyzers) as (_dev, settings):
            client = await connect(settings)
            start = time.monotonic()
            await (await start_run(client, settings, *work, f"scale-{analyzers}")).result()
            walls[analyzers] = time.monotonic() - start
    figures.append(Figure("worker scaling: 2 analyzers against 1 (no model latency)", walls[2] / walls[1], "x",
                          "< 1 where the analyzer's CPU matters", f"{walls[1]:.1f} s, {walls[2]:.1f} s, "
                          f"{walls[4]:.1f} s with 1, 2, 4 analyzers on 2 cores"))
    llm.latency = 0.5
    timings = {}
    for crash in (False, True):
        with stack(folder / f"c{crash}", llm, contact_chunk_size=200, opportunity_chunk_size=200,
                   max_parallel_chunks=8) as (dev, settings):
            client = await connect(settings)
            name = f"crash-{crash}"
            start = time.monotonic()
            handle = await start_run(client, settings, *work, name)
            if crash:
                while len([r for r in llm.requests if r.run == name and r.answered]) < 40:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                in_flight = len([r for r in llm.requests if r.run == name and not r.answered])
                await asyncio.to_thread(dev.kill_and_restart, "analyzer")
            await handle.result()
            timings[crash] = time.monotonic() - start
            asked: dict[tuple[str, str, int], int] = {}
            for r in (r for r in llm.requests if r.run == name):
                asked[(r.step, r.agent, r.attempt)] = asked.get((r.step, r.agent, r.attempt), 0) + 1
            repeated = sum(n - 1 for n in asked.values())
    figures.append(Figure("crash cost: model calls repeated after kill -9 of the analyzer", repeated, "calls",
                          "<= calls in flight", f"{in_flight} calls were in flight; the run took "
                          f"{timings[True]:.1f} s against {timings[False]:.1f} s without the crash"))


def table(figures: list[Figure]) -> str:
    lines = ["| measure | value | goal | detail |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.value:.2f}{f.unit if f.unit == 'x' else ' ' + f.unit} | {f.goal} | {f.detail} |"
              for f in figures]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call (default 1)")
    parser.add_argument("--throughput-contacts", type=int, default=20_000,
                        help="contacts of the no-latency throughput run (default 20,000; --large: 100,000)")
    parser.add_argument("--large", action="store_true", help="the throughput run at 100,000 / 50,000")
    parser.add_argument("--extended", action="store_true", help="also worker scaling and the cost of a crash "
                        "(several minutes more)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the figures ({RESULTS.name})")
    args = parser.parse_args()
    if args.large:
        args.throughput_contacts = 100_000
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as folder:
        figures = asyncio.run(measure(args, Path(folder)))
    print(table(figures), flush=True)
    args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                                     "latency_seconds": args.latency,
                                     "figures": [asdict(f) for f in figures]}, indent=2))
    print(f"\nwritten to {args.json}", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
