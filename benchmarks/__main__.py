"""`make bench`: what durability and the gates cost, measured against the model's own time. Prints a table and
writes JSON (benchmarks/results.json); figures, not timed tests.

It starts what it needs through the client's own launcher (``client.devstack.DevStack``: a Temporal dev server, a
Redis, the three services as processes) and an OpenAI-compatible model server whose every answer takes a fixed
latency, so the LLM's share of a run is known exactly: the **LLM time** of a run is the wall time during which at
least one model call was in flight, and the **overhead** is wall time / LLM time (1.00x: nothing but the model).

    uv run python -m benchmarks                 # the default set (about 3 minutes)
    uv run python -m benchmarks --scale         # also 100,000 / 50,000 at 0.5 s a call, 64 in flight
    uv run python -m benchmarks --embedded      # also the whole sample on the embedded model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from benchmarks.common import (
    ARTICLE,
    CpuSampler,
    Figure,
    Figures,
    MachineTime,
    cpu_seconds,
    export,
    free_port,
    histories,
    own_cpu_seconds,
    peaks,
    stack,
    timed_run,
)
from benchmarks.floor import Floor, SequentialFloor, ShapeFloor, noop
from client.cli import start_run
from client.demo import DEMO_SETTINGS, SAMPLE
from client.devstack import DevStack
from deploy.scripted_model import ScriptedLlm
from shared.settings import Settings
from shared.temporal import connect

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"


PAIRS = 3  # throughput runs, each followed by the floors


@dataclass(frozen=True)
class Pair:
    """One throughput run and the floors measured right after it."""

    run_id: str
    start: float
    elapsed: float
    sampler: CpuSampler
    bare: float  # bare activities a second
    shaped: float  # bare steps of a gated step's shape a second
    run_cpu: float  # CPU seconds the stack's processes spent on the run
    floor_cpu: float  # CPU seconds the server and the floor's worker (this process) spent on the bare floor
    stolen: tuple[float, float]  # the share of the machine the hypervisor took during the run, during its floor

    def ratio(self, steps: int) -> float:
        """Gated steps a second against bare activities a second, two activities a step."""
        return 2 * steps / self.elapsed / self.bare

    def cpu_ratio(self) -> float:
        """Two bare activities' CPU against a gated step's (the floor ran two activities a gated step)."""
        return self.floor_cpu / self.run_cpu


def branch_span(llm: ScriptedLlm, run_id: str) -> tuple[float, float]:
    """The first model call of either branch and the end of the last (the insights step excluded)."""
    mine = [r for r in llm.requests if r.run == run_id and r.step.startswith(("contacts/", "opportunities/"))]
    return min(r.received for r in mine), max(r.answered for r in mine)


def branch_phase(llm: ScriptedLlm, run_id: str) -> float:
    """From the first model call of either branch to the end of the last."""
    first, last = branch_span(llm, run_id)
    return last - first


async def floor(client: Client, count: int) -> float:
    """The dev server's own floor: bare activities a second, 16 in flight, one worker in this process."""
    queue = f"bench-floor-{os.getpid()}"
    async with Worker(client, task_queue=queue, workflows=[Floor], activities=[noop]):
        start = time.monotonic()
        await client.execute_workflow("BenchFloor", count, id=f"floor-{time.time_ns()}", task_queue=queue)
        return count / (time.monotonic() - start)


async def shape_floor(client: Client, steps: int, in_flight: int) -> float:
    """The dev server's floor for the pipeline's shape: bare steps a second, each an activity on one task queue then
    one on another, ``in_flight`` at a time, the workflow and the two activity queues served by three workers."""
    queue = f"bench-shape-{os.getpid()}"
    async with Worker(client, task_queue=queue, workflows=[ShapeFloor]), \
            Worker(client, task_queue=f"{queue}-first", activities=[noop]), \
            Worker(client, task_queue=f"{queue}-second", activities=[noop]):
        start = time.monotonic()
        await client.execute_workflow("BenchShapeFloor", args=[steps, f"{queue}-first", f"{queue}-second", in_flight],
                                      id=f"shape-{time.time_ns()}", task_queue=queue)
        return steps / (time.monotonic() - start)


async def hand_off(client: Client, count: int = 50) -> float:
    """Milliseconds a bare activity takes after another on another task queue: one workflow task and one activity
    task, the least a step's hand-off costs on this server (an activity on the workflow's own queue can be handed
    over eagerly, which no step of ours is)."""
    queue = f"bench-sequential-{os.getpid()}"
    async with Worker(client, task_queue=queue, workflows=[SequentialFloor]), \
            Worker(client, task_queue=f"{queue}-activities", activities=[noop]):
        start = time.monotonic()
        await client.execute_workflow("BenchSequentialFloor", args=[count, f"{queue}-activities"],
                                      id=f"seq-{time.time_ns()}", task_queue=queue)
        return (time.monotonic() - start) / count * 1000


async def throughput(client: Client, dev: DevStack, settings: Settings, llm: ScriptedLlm, files: tuple[Path, Path],
                     contacts: int, figures: Figures) -> None:
    """The no-latency throughput run on an export of ``contacts`` contacts and half as many deals, against the dev
    server's floors for as many activities."""
    steps = -(-contacts // 200) + -(-(contacts // 2) // 200) + 1
    size = f"{contacts:,} / {contacts // 2:,}"
    # the run and the floors in turn, PAIRS times: this machine's speed drifts within minutes, so each run is set
    # against the floors measured right after it, and the pair with the median ratio is reported
    pairs: list[Pair] = []
    for n in range(PAIRS):
        run_id = f"throughput-{contacts}-{n}"
        machine, used = MachineTime.now(), sum(cpu_seconds(dev).values())
        with CpuSampler(dev) as sampler:
            start = time.monotonic()
            handle = await start_run(client, settings, *files, run_id)
            await handle.result()
            elapsed = time.monotonic() - start
        after_run, run_cpu = MachineTime.now(), sum(cpu_seconds(dev).values()) - used
        used = sum(cpu_seconds(dev).values()) + own_cpu_seconds()
        bare = await floor(client, steps * 2)
        floor_cpu, after_floor = sum(cpu_seconds(dev).values()) + own_cpu_seconds() - used, MachineTime.now()
        pairs.append(Pair(run_id, start, elapsed, sampler, bare, await shape_floor(client, steps, 16), run_cpu,
                          floor_cpu, (after_run.stolen_since(machine), after_floor.stolen_since(after_run))))
    ranked = sorted(pairs, key=lambda pair: pair.ratio(steps))
    middle = ranked[len(ranked) // 2]
    run_id, start, elapsed, sampler, bare, shaped = (middle.run_id, middle.start, middle.elapsed, middle.sampler,
                                                     middle.bare, middle.shaped)
    spread = ", ".join(f"{pair.ratio(steps):.2f}x" for pair in pairs)
    stolen = ", ".join(f"{pair.stolen[0]:.0%} / {pair.stolen[1]:.0%}" for pair in pairs)
    figures.append(Figure(f"throughput, no model latency, {size}: gated steps a second", steps / elapsed,
                          "steps/s", "at least half the floor", f"{steps} gated steps in {elapsed:.1f} s; the dev "
                          f"server's floor here: {bare:.0f} bare activities/s on the workflow's own queue, "
                          f"{shaped:.0f} bare steps/s of a gated step's shape; the median of {PAIRS} runs, each "
                          f"against the floors measured after it (against the bare floor: {spread}; the share of "
                          f"the machine the hypervisor took during each run / its floor: {stolen})"))
    # the same comparison in CPU: the run and the floor are both CPU-bound on this machine, so CPU a step against
    # CPU a bare step is what the wall-time ratio would be with no share of the machine taken by other guests
    by_cpu = sorted(pairs, key=Pair.cpu_ratio)
    typical = by_cpu[len(by_cpu) // 2]
    figures.append(Figure(f"throughput against the floor in CPU, {size}: two bare activities' CPU against a gated "
                          "step's", typical.cpu_ratio(), "x", ">= 0.5x", f"the median of {PAIRS} "
                          f"runs ({', '.join(f'{pair.cpu_ratio():.2f}x' for pair in pairs)}); a gated "
                          f"step {typical.run_cpu / steps * 1000:.1f} ms over the stack's processes (the model "
                          f"server's stand-in and the client left out), two bare activities "
                          f"{typical.floor_cpu / steps * 1000:.1f} ms (the server and its worker)"))
    # the chunk steps alone, from the first chunk's model call to the last one's: ingest, aggregation and the report
    # are one step each and take a share of the whole run's time, the larger the smaller the export
    chunks = branch_phase(llm, run_id)
    figures.append(Figure(f"throughput against the floor, {size} (2 activities per gated step)",
                          2 * steps / elapsed / bare, "x", ">= 0.5x", f"the chunk steps alone: "
                          f"{(steps - 1) / chunks:.1f} steps/s over {chunks:.1f} s, "
                          f"{2 * (steps - 1) / chunks / bare:.2f}x the floor"))
    figures.append(Figure(f"throughput against the floor for the pipeline's shape, {size} (bare steps: an activity "
                          "on one queue, then one on another, 16 in flight)", steps / elapsed / shaped, "x",
                          ">= 0.5x", f"{shaped:.0f} bare steps/s; the chunk steps alone: "
                          f"{(steps - 1) / chunks / shaped:.2f}x"))
    # where the CPU went, by phase: before the first chunk's model call (ingest), the chunk steps, after the last
    # one (aggregation, the insights step, the report)
    first, last = branch_span(llm, run_id)
    chunk_cpu = sampler.spent(first, last)
    before, after = sampler.spent(start, first), sampler.spent(last, start + elapsed)
    figures.append(Figure(f"throughput run, {size}: CPU a chunk step, all processes",
                          sum(chunk_cpu.values()) / (steps - 1) * 1000, "ms", "", ", ".join(
                              f"{name} {seconds / (steps - 1) * 1000:.1f}" for name, seconds in
                              chunk_cpu.items() if name != "redis") + f"; {sum(chunk_cpu.values()):.1f} s "
                          f"over {last - first:.1f} s of chunk steps on {os.cpu_count()} cores; before the first "
                          f"chunk's call {first - start:.2f} s (analyzer {before.get('analyzer', 0):.2f} s CPU), "
                          f"after the last one {start + elapsed - last:.2f} s (analyzer "
                          f"{after.get('analyzer', 0):.2f} s)"))


async def measure(args: argparse.Namespace, folder: Path) -> Figures:
    figures = Figures()
    llm = ScriptedLlm(latency=args.latency).start()
    mid = export(folder, 2000, 1000)
    try:
        with stack(folder / "a", llm, contact_chunk_size=200, opportunity_chunk_size=200,
                   max_parallel_chunks=4) as (_dev, settings):
            client = await connect(settings)
            wall, busy, calls = await timed_run(client, settings, llm, *ARTICLE, "first")
            step = await hand_off(client)
            figures.append(Figure("overhead, 5/4 example, first run after start", wall / busy, "x", "<= 1.2x",
                                  f"{wall:.2f} s wall, {busy:.2f} s LLM, {calls} calls"))
            ratios = []
            for n in range(3):
                wall, busy, calls = await timed_run(client, settings, llm, *ARTICLE, f"warm-{n}")
                ratios.append((wall / busy, wall, busy, calls))
            best = sorted(ratios)[1]
            figures.append(Figure("one hand-off on this dev server: a workflow task, then a bare activity", step,
                                  "ms", "", "50 in a row; a gated step needs at least two, the 5/4 run about "
                                  "eight in a row"))
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
            phase = {name: branch_phase(llm, name) for name in ("branches-parallel", "branches-sequential")}
            figures.append(Figure("parallelism: two equal branches at once vs one after the other (branch phase)",
                                  phase["branches-parallel"] / phase["branches-sequential"], "x", "<= 0.55x",
                                  f"{phase['branches-parallel']:.2f} s vs {phase['branches-sequential']:.2f} s from "
                                  f"the first branch call to the last; whole runs {both:.2f} s vs {apart:.2f} s, "
                                  "both with the same insights step"))
        llm.latency = 0.0
        with stack(folder / "b", llm, contact_chunk_size=200, opportunity_chunk_size=200, max_parallel_chunks=16,
                   max_concurrent_activities=16, ai_review_sample=0) as (dev, settings):
            client = await connect(settings)
            # the pipeline's own cost with nothing to wait for: a warm 5/4 run with no model latency, ten times, and
            # the CPU each process spent on it (steadier on this machine than any wall time)
            await timed_run(client, settings, llm, *ARTICLE, "bare-warm")
            before = cpu_seconds(dev)
            alone = sorted([(await timed_run(client, settings, llm, *ARTICLE, f"bare-{n}"))[0] for n in range(10)])
            spent = {name: (cpu_seconds(dev)[name] - seconds) / 10 * 1000 for name, seconds in before.items()}
            figures.append(Figure("a warm 5/4 run with no model latency (median of 10): the pipeline alone",
                                  alone[5] * 1000, "ms", "", "CPU a run: " + ", ".join(
                                      f"{name} {ms:.0f} ms" for name, ms in spent.items())))
            for contacts in args.throughput_contacts:
                await throughput(client, dev, settings, llm, export(folder, contacts, contacts // 2), contacts,
                                 figures)
            peak = peaks(dev)
            figures.append(Figure("peak memory of the largest process in the throughput runs", max(peak.values()),
                                  "MB", "< 500 MB each", ", ".join(f"{name} {mb:.0f}" for name, mb in peak.items())))
        if args.extended:
            await extended(args, folder, llm, figures)
        if args.scale:
            await scale(args, folder, llm, figures)
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


async def scale(args: argparse.Namespace, folder: Path, llm: ScriptedLlm, figures: Figures) -> None:
    """A large export at 0.5 s a call with 64 gated steps in flight (32 per branch), against a tenth of it: wall
    time against the ideal, peak memory of every process, and the largest history and payload at both sizes."""
    llm.latency = 0.5
    seen: dict[int, tuple[float, float, int, dict[str, float], tuple[int, int, int]]] = {}
    for contacts in (args.scale_contacts // 10, args.scale_contacts):
        work = export(folder, contacts, contacts // 2, seed=5)
        with stack(folder / f"scale-{contacts}", llm, contact_chunk_size=200, opportunity_chunk_size=200,
                   max_parallel_chunks=32, max_concurrent_activities=64) as (dev, settings):
            client = await connect(settings)
            run_id = f"scale-{contacts}"
            wall, _busy, calls = await timed_run(client, settings, llm, *work, run_id)
            seen[contacts] = (wall, calls * llm.latency, calls, peaks(dev), await histories(client, run_id))
    small, large = args.scale_contacts // 10, args.scale_contacts
    wall, call_seconds, calls, peak, (workflows, events, payload) = seen[large]
    # the ideal: every model call with 64 in flight all the time, then the insights step's two calls in a row
    ideal = (call_seconds - 2 * llm.latency) / 64 + 2 * llm.latency
    figures.append(Figure(f"scale: {large:,} contacts / {large // 2:,} deals at 0.5 s a call, 64 in flight",
                          wall / ideal, "x the ideal", "", f"{wall:.1f} s wall; ideal {ideal:.1f} s ({calls} calls "
                          "at 0.5 s, 64 at a time)"))
    figures.append(Figure("scale: peak memory of the largest process", max(peak.values()), "MB", "< 500 MB each",
                          ", ".join(f"{name} {mb:.0f}" for name, mb in peak.items())))
    _w, _c, _n, _p, (small_workflows, small_events, small_payload) = seen[small]
    figures.append(Figure("scale: largest history (events)", events, "events", "independent of the export's size",
                          f"{events} at {large:,} contacts ({workflows} workflows), {small_events} at {small:,} "
                          f"({small_workflows} workflows)"))
    figures.append(Figure("scale: largest payload", payload / 1024, "KB", "independent of the export's size",
                          f"{payload:,} B at {large:,} contacts, {small_payload:,} B at {small:,}"))


def embedded(figures: Figures, folder: Path) -> None:
    """The whole generated sample end to end on the embedded model (the demo's settings, the local provider):
    wall time, calls, tokens, tokens a second while the model was busy, and time per gated step."""
    settings = Settings(llm_provider="local", temporal_address=f"127.0.0.1:{free_port()}",
                        temporal_ui_url=f"http://127.0.0.1:{free_port()}", local_model_port=free_port(),
                        redis_url=f"redis://127.0.0.1:{free_port()}/0",
                        artifact_root=str(folder / "embedded" / "artifacts"),
                        payload_key_file=folder / "embedded" / "keys.json", trace_dir=folder / "embedded" / "spans"
                        ).model_copy(update=DEMO_SETTINGS)
    env = {"TOLLGATE_TRACE_DIR": str(settings.trace_dir), "TOLLGATE_LLM_PROVIDER": "local",
           "TOLLGATE_REUSE_VALIDATED": "false"}
    with open(os.devnull, "w") as quiet:
        dev = DevStack(settings, state_dir=folder / "embedded" / "state", extra_env=env, out=quiet, echo=False)
        dev.start()
        try:
            settings = settings.model_copy(update={"payload_key_file": Path(dev._env()["TOLLGATE_PAYLOAD_KEY_FILE"])})

            async def run() -> tuple[float, object]:
                client = await connect(settings)
                started = time.monotonic()
                handle = await start_run(client, settings, SAMPLE / "crm_contacts.csv",
                                         SAMPLE / "crm_opportunities.csv", "embedded")
                result = await handle.result()
                return time.monotonic() - started, result

            wall, result = asyncio.run(run())
        finally:
            dev.stop()
    report = result.report  # type: ignore[attr-defined]
    calls = []
    for path in Path(settings.trace_dir or ".").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            span = json.loads(line)
            if span["name"].startswith("chat "):
                calls.append((span["start"] / 1e9, span["end"] / 1e9))
    busy, cursor = 0.0, 0.0
    for begin, end in sorted(calls):  # one model slot: the union of the calls is the time the model worked
        begin = max(begin, cursor)
        if end > begin:
            busy += end - begin
            cursor = end
    usage, steps = report.usage, report.gates.gated_steps
    figures.append(Figure("embedded model (Qwen2.5-Coder-1.5B, 2 cores): the whole sample, 200 contacts / 120 deals",
                          wall, "s", "< 300 s (with the stack's start: make demo)",
                          f"{usage.calls} calls, {usage.input_tokens:,} tokens in, {usage.output_tokens:,} out; the "
                          f"model busy {busy:.0f} s: {usage.output_tokens / max(busy, 1e-9):.1f} tokens/s out, "
                          f"{(usage.input_tokens + usage.output_tokens) / max(busy, 1e-9):.0f} in and out; "
                          f"{steps} gated steps, {wall / max(steps, 1):.1f} s each"))


def table(figures: list[Figure]) -> str:
    lines = ["| measure | value | goal | detail |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.value:.2f}{f.unit if f.unit == 'x' else ' ' + f.unit} | {f.goal} | {f.detail} |"
              for f in figures]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call (default 1)")
    parser.add_argument("--throughput-contacts", type=int, nargs="+", default=[100_000, 20_000],
                        help="contacts of each no-latency throughput run, with half as many deals (default: 100,000, "
                        "as issue 12 measured, then 20,000, where ingest, aggregation and the report weigh more)")
    parser.add_argument("--extended", action="store_true", help="also worker scaling and the cost of a crash "
                        "(several minutes more)")
    parser.add_argument("--scale", action="store_true", help="also 100,000 contacts / 50,000 opportunities at 0.5 s a "
                        "call, 64 in flight, against a tenth of it (a few minutes)")
    parser.add_argument("--scale-contacts", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--embedded", action="store_true", help="also the whole sample on the embedded model "
                        "(a few minutes; the model's weights installed, as `make demo` does)")
    parser.add_argument("--only-embedded", action="store_true", help="the embedded model's run alone")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the figures ({RESULTS.name})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as folder:
        figures = Figures() if args.only_embedded else asyncio.run(measure(args, Path(folder)))
        if args.embedded or args.only_embedded:
            embedded(figures, Path(folder))
    print(table(figures), flush=True)
    args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                                     "latency_seconds": args.latency,
                                     "figures": [asdict(f) for f in figures]}, indent=2))
    print(f"\nwritten to {args.json}", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
