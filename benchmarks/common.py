"""What every benchmark needs: a generated export, the stack started by the client's own launcher against the
scripted model server, and the measures read off a run (model busy time, peak memory, history and payload sizes).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from client.cli import start_run
from client.devstack import DevStack
from deploy.scripted_model import Request, ScriptedLlm
from shared.settings import Settings

TITLES = ("Engineering Manager", "Program Manager", "Sales Manager", "Product Manager", "Account Executive",
          "Marketing Manager")
STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost")
_ARTICLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "article"
ARTICLE = (_ARTICLE / "crm_contacts.csv", _ARTICLE / "crm_opportunities.csv")  # the article's 5/4 example


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str
    detail: str = ""


class Figures(list[Figure]):
    """The figures so far, each printed as it is measured (a long benchmark shows its progress)."""

    def append(self, figure: Figure) -> None:
        super().append(figure)
        print(f"{figure.name}: {figure.value:.2f} {figure.unit} ({figure.detail})", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def export(folder: Path, contacts: int, deals: int, seed: int = 7) -> tuple[Path, Path]:
    """A generated export: contacts at 40 companies with titles the rules leave to the model, deals on them."""
    rng = random.Random(seed)
    c, o = folder / f"contacts-{contacts}-{seed}.csv", folder / f"deals-{deals}-{seed}.csv"
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


def in_flight(requests: list[Request], start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of [start, end] during which at least one model call was in flight, merged and in order (a
    call still unanswered runs to ``end``)."""
    spans: list[tuple[float, float]] = []
    for begin, finish in sorted((max(r.received, start), min(r.answered or end, end)) for r in requests):
        if spans and begin <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], finish))
        elif finish > begin:
            spans.append((begin, finish))
    return spans


def busy_seconds(requests: list[Request], start: float, end: float) -> float:
    """Wall time within [start, end] during which at least one model call was in flight."""
    return sum(finish - begin for begin, finish in in_flight(requests, start, end))


def peak_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB; 0 where /proc does not say."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class MachineTime:
    """The machine's CPU time so far, all cores, from the first line of /proc/stat: in all, and what the hypervisor
    took for other guests (``steal``). On a shared VM a run and its floor can lose different shares of the machine,
    which moves a wall-time ratio however fast the code is."""

    total: int  # clock ticks
    steal: int

    @classmethod
    def parse(cls, text: str) -> MachineTime:
        ticks = [int(field) for field in text.split("\n", 1)[0].split()[1:]]
        return cls(total=sum(ticks[:8]), steal=ticks[7] if len(ticks) > 7 else 0)  # guest time is within user's

    @classmethod
    def now(cls) -> MachineTime:
        return cls.parse(Path("/proc/stat").read_text())

    def stolen_since(self, before: MachineTime) -> float:
        """The share of the machine's time the hypervisor took since ``before`` (0 to 1)."""
        return (self.steal - before.steal) / max(1, self.total - before.total)


def own_cpu_seconds() -> float:
    """CPU seconds (user and system) this process has used so far: the floors' worker runs here."""
    times = os.times()
    return times.user + times.system


def cpu_seconds(dev: DevStack) -> dict[str, float]:
    """CPU seconds (user and system) each process of the stack has used so far, from /proc."""
    used = {}
    for child in dev.children:
        if child.process is not None:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                used[child.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


@dataclass
class CpuSampler:
    """Every process's CPU seconds read from /proc every ``every`` seconds on a thread of its own, so that a run's
    CPU can be split by phase afterwards (``spent``)."""

    dev: DevStack
    every: float = 0.02
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def __enter__(self) -> CpuSampler:
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), cpu_seconds(self.dev)))
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), cpu_seconds(self.dev)))

    def spent(self, start: float, end: float) -> dict[str, float]:
        return spent_between(self.samples, start, end)


def spent_between(samples: list[tuple[float, dict[str, float]]], start: float, end: float) -> dict[str, float]:
    """CPU seconds each process spent between ``start`` and ``end``: the samples nearest to them (a sample is a time
    and each process's CPU seconds so far), at most a sampling interval off at each end."""
    if not samples:
        return {}
    first = min(samples, key=lambda s: abs(s[0] - start))[1]
    last = min(samples, key=lambda s: abs(s[0] - end))[1]
    return {name: last[name] - first[name] for name in first if name in last}


def peaks(dev: DevStack) -> dict[str, float]:
    return {c.name: peak_mb(c.process.pid) for c in dev.children if c.process is not None}


@contextlib.contextmanager
def stack(folder: Path, llm: ScriptedLlm, analyzers: int = 1, **settings: Any) -> Iterator[tuple[DevStack, Settings]]:
    """The whole stack through ``tollgate dev``'s launcher, on free ports, its model the scripted server."""
    configured = Settings(
        temporal_address=f"127.0.0.1:{free_port()}", temporal_ui_url=f"http://127.0.0.1:{free_port()}",
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


async def histories(client: Client, run_id: str) -> tuple[int, int, int]:
    """Over every workflow of a run: how many there are, the most events one has, the largest payload (bytes)."""
    events, largest, count = 0, 0, 0
    async for execution in client.list_workflows(f"WorkflowId STARTS_WITH '{run_id}'"):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        count += 1
        events = max(events, len(history.events))
        for event in history.events:
            for payloads in (event.activity_task_scheduled_event_attributes.input,
                             event.activity_task_completed_event_attributes.result,
                             event.child_workflow_execution_completed_event_attributes.result,
                             event.start_child_workflow_execution_initiated_event_attributes.input,
                             event.workflow_execution_started_event_attributes.input,
                             event.workflow_execution_completed_event_attributes.result):
                largest = max([largest, *(p.ByteSize() for p in payloads.payloads)])
            for details in event.marker_recorded_event_attributes.details.values():
                largest = max([largest, *(p.ByteSize() for p in details.payloads)])
    return count, events, largest
