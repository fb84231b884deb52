"""The embedded default: the model's integrity check, the sample generator, and `tollgate dev` as a user runs it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.devstack import Child
from deploy.model import ModelIntegrityError, ModelSpec, assemble, ensure_model
from deploy.scripted_model import ScriptedLlm
from examples.generate_sample import generate
from tests.harness import ARTICLE, ROOT, free_port, wait_for_port


def fake_spec(parts: list[Path]) -> ModelSpec:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    return ModelSpec(name="qwen2.5-coder-0.5b", filename="model.gguf", sha256=digest, packages=("x",), extra="x")


def test_model_with_wrong_hash_is_refused_and_removed(tmp_path: Path) -> None:
    parts = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    parts[0].write_bytes(b"GGUF" + b"a" * 100)
    parts[1].write_bytes(b"b" * 100)
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelIntegrityError, match="not the official 0000; it was removed"):
        assemble(parts, target, "0000")
    assert not target.exists() and not target.with_name("model.gguf.partial").exists()


def test_model_is_joined_in_order_and_a_corrupt_cache_is_replaced(tmp_path: Path) -> None:
    parts = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    parts[0].write_bytes(b"first-")
    parts[1].write_bytes(b"second")
    spec = fake_spec(parts)
    cache = tmp_path / "cache"
    path = ensure_model(spec, cache, parts)
    assert path.read_bytes() == b"first-second"
    path.write_bytes(b"tampered!!!!")  # a different file in the cache, as a bad disk or a bad actor would leave it
    assert ensure_model(spec, cache, parts).read_bytes() == b"first-second"


def test_sample_generator_reproduces_the_committed_sample(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in ("crm_contacts.csv", "crm_opportunities.csv", "ground_truth_contacts.csv"):
        assert (tmp_path / name).read_text() == (ROOT / "examples" / "data" / "sample" / name).read_text()
    contacts = (tmp_path / "crm_contacts.csv").read_text().splitlines()
    assert len(contacts) == 201 and any(line.endswith(",,2023-01-01") or ",," in line for line in contacts)


def command(pid: int) -> list[str]:
    return (Path("/proc") / str(pid) / "cmdline").read_text().rstrip("\0").split("\0")


def environ(pid: int) -> dict[str, str]:
    entries = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_a_child_runs_with_its_defaults_under_the_stacks_environment() -> None:
    worker = Child("analyzer", ["analyzer"], lambda: True, defaults={"MALLOC_ARENA_MAX": "2"})
    assert worker.environment({"PATH": "/bin"}) == {"MALLOC_ARENA_MAX": "2", "PATH": "/bin"}
    assert worker.environment({"MALLOC_ARENA_MAX": "8"}) == {"MALLOC_ARENA_MAX": "8"}  # the user's setting wins
    assert Child("temporal", ["temporal"], lambda: True).environment({"PATH": "/bin"}) == {"PATH": "/bin"}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_all_exit(pids: list[int], within: float) -> None:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if alive(pid)] == [], "processes outlived the stack"


def dev_env(tmp_path: Path, llm: ScriptedLlm, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "OPENAI_", "MALLOC_"))}
    temporal_port, ui_port = free_port(), free_port()
    env.update({
        "TOLLGATE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TOLLGATE_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "TOLLGATE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TOLLGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "TOLLGATE_LLM_PROVIDER": "openai-compatible",
        "TOLLGATE_LLM_BASE_URL": llm.base_url,
        "TOLLGATE_LLM_MODEL": "scripted",
        "PYTHONPATH": str(ROOT),
    })
    return env


def tollgate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "client.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared; output:\n{''.join(seen)}")


def test_dev_starts_runs_a_workflow_refuses_a_twin_and_stops_clean(tmp_path: Path,
                                                                   scripted_llm: ScriptedLlm) -> None:
    redis_port = free_port()  # nothing answers there, so dev starts its own Redis
    env = dev_env(tmp_path, scripted_llm, redis_port)
    dev = tollgate("dev", "--analyzers", "2", env=env, cwd=tmp_path)
    try:
        output = wait_for_line(dev, "tollgate dev | ready:", 90)
        ready = output[-1]
        for name in ("temporal", "redis", "orchestrator", "analyzer-1", "analyzer-2", "validator"):
            assert name in ready
        assert "model" not in ready  # an openai-compatible provider needs no local model server
        wait_for_port(redis_port, 5)

        twin = tollgate("dev", env=env, cwd=tmp_path)
        out, _ = twin.communicate(timeout=60)
        assert twin.returncode == 1
        assert f"tollgate dev is already running here (pid {dev.pid})" in out

        run = subprocess.run(
            [sys.executable, "-m", "client.cli", "run", str(ARTICLE / "crm_contacts.csv"),
             str(ARTICLE / "crm_opportunities.csv"), "--wait"], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "contacts 5 at 3 companies" in run.stdout

        children = children_of(dev.pid)
        assert len(children) == 6  # temporal, redis, orchestrator, two analyzers, validator
        # the workers run with at most two glibc arenas (WORKER_DEFAULTS); Temporal and Redis as the stack says
        arenas = sorted((" ".join(command(pid)[-2:]), environ(pid).get("MALLOC_ARENA_MAX")) for pid in children)
        workers = [(f"-m services.{name}", "2") for name in ("analyzer", "analyzer", "orchestrator", "validator")]
        assert [pair for pair in arenas if pair[0].startswith("-m ")] == workers
        assert [value for name, value in arenas if not name.startswith("-m ")] == [None, None]  # Temporal, Redis
        dev.send_signal(signal.SIGTERM)
        rest, _ = dev.communicate(timeout=60)
        assert dev.returncode == 0 and "tollgate dev | stopped" in rest
        assert_all_exit(children, within=10)
    finally:
        if dev.poll() is None:
            dev.kill()


def redis_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_dev_refuses_a_port_taken_by_someone_else(tmp_path: Path, scripted_llm: ScriptedLlm,
                                                  temporal_address: str, redis_url: str) -> None:
    env = dev_env(tmp_path, scripted_llm, redis_port(redis_url))
    env["TOLLGATE_TEMPORAL_ADDRESS"] = temporal_address  # the test session's own Temporal holds it
    dev = tollgate("dev", env=env, cwd=tmp_path)
    out, _ = dev.communicate(timeout=60)
    port = temporal_address.rsplit(":", 1)[1]
    assert dev.returncode == 1
    assert f"port {port} is already in use, so a Temporal dev server cannot start there" in out


def test_killed_dev_supervisor_leaves_no_orphans(tmp_path: Path, scripted_llm: ScriptedLlm, redis_url: str) -> None:
    dev = tollgate("dev", env=dev_env(tmp_path, scripted_llm, redis_port(redis_url)), cwd=tmp_path)
    try:
        wait_for_line(dev, "tollgate dev | ready:", 90)
        children = children_of(dev.pid)
        assert len(children) == 4  # temporal, orchestrator, analyzer, validator; the running Redis is reused
        dev.kill()  # SIGKILL: no chance to clean up, the children must notice on their own
        dev.wait(10)
        assert_all_exit(children, within=20)
    finally:
        if dev.poll() is None:
            dev.kill()
