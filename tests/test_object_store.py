"""The artifact store on a real S3-compatible server (moto's server mode, started here), and a whole run whose
services read and write nothing but that bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.scripted_model import ScriptedLlm
from shared.artifacts import ArtifactChanged, ArtifactExists, ArtifactStore
from tests.harness import ARTICLE, ROOT, free_port, make_stack, tollgate_cli, wait_for_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        raise RuntimeError("moto_server is missing: `uv sync` installs moto[server] with the dev dependencies")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        wait_for_port(port, 30, process)
        saved = {k: os.environ.get(k) for k in CREDENTIALS}
        os.environ.update(CREDENTIALS)
        yield f"http://127.0.0.1:{port}"
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        process.terminate()
        process.wait(10)


def bucket(endpoint: str, name: str) -> ArtifactStore:
    store = ArtifactStore(f"s3://{name}/tollgate", endpoint)
    store.fs.mkdir(name)
    return store


def test_the_store_on_s3_writes_once_checks_digests_and_stores_an_upload_once(s3_endpoint: str,
                                                                              tmp_path: Path) -> None:
    store = bucket(s3_endpoint, "unit")
    ref = store.write_bytes("runs/r1/steps/s/attempt-1.1.json", b"{}", once=True)
    assert store.exists(ref) and store.read_bytes(ref) == b"{}"
    with pytest.raises(ArtifactExists):
        store.write_bytes(ref.key, b"[]", once=True)
    store.write_bytes(ref.key, b"[]")  # forced over it
    with pytest.raises(ArtifactChanged):
        store.read_bytes(ref)
    assert store.location(ref) == "s3://unit/tollgate/runs/r1/steps/s/attempt-1.1.json"

    export = tmp_path / "contacts.csv"
    export.write_bytes((ARTICLE / "crm_contacts.csv").read_bytes())
    first, second = store.upload(export), store.upload(ARTICLE / "crm_contacts.csv")
    assert first == second and first.key.startswith("uploads/") and first.key.endswith(".csv")
    assert len(store.fs.ls(f"unit/tollgate/uploads/{first.key.split('/')[1]}")) == 1, "stored once"
    with store.local_copy(first, "contacts.csv") as local:
        assert local.name == "contacts.csv" and local.read_bytes() == export.read_bytes()
    with pytest.raises(ValueError, match="not a relative key"):
        store.write_bytes("../escape", b"x")


async def test_small_store_work_leaves_the_event_loop_only_for_an_object_store(s3_endpoint: str,
                                                                                 tmp_path: Path) -> None:
    """A chunk's read or write is done at once on a local store (a hop to a thread cost more CPU than the work) and on
    a worker thread on S3, where it waits on the network and would hold every other step of the worker."""
    import threading

    local, remote = ArtifactStore(tmp_path / "store"), bucket(s3_endpoint, "small-work")
    here = threading.get_ident()
    assert await local.small(threading.get_ident) == here
    assert await remote.small(threading.get_ident) != here
    ref = await remote.small(remote.write_bytes, "runs/r/x.json", b"{}", once=True)
    assert await remote.small(remote.read_bytes, ref) == b"{}"


async def test_a_whole_run_through_an_s3_bucket(s3_endpoint: str, temporal_address: str, scripted_llm: ScriptedLlm,
                                                run_id: str, tmp_path: Path) -> None:
    bucket(s3_endpoint, "runs")
    stack = make_stack(temporal_address, scripted_llm, tmp_path, extra_env=CREDENTIALS,
                       TOLLGATE_ARTIFACT_ROOT="s3://runs/tollgate", TOLLGATE_S3_ENDPOINT_URL=s3_endpoint)
    try:
        # the exports sit in a folder the workers are never told about: they get them from the bucket
        folder = tmp_path / "client-only"
        folder.mkdir()
        for name in ("crm_contacts.csv", "crm_opportunities.csv"):
            (folder / name).write_bytes((ARTICLE / name).read_bytes())
        done = await tollgate_cli(stack.env, "run", str(folder / "crm_contacts.csv"),
                                  str(folder / "crm_opportunities.csv"), "--wait", "--run-id", run_id)
        assert done.returncode == 0, done.stdout + done.stderr + stack.log_text()[-3000:]
        assert f"report: s3://runs/tollgate/runs/{run_id}/report/report.md" in done.stdout
    finally:
        stack.stop()
    store = ArtifactStore("s3://runs/tollgate", s3_endpoint)
    assert store.read_bytes(f"runs/{run_id}/report/report.md").startswith(f"# CRM analysis report: {run_id}".encode())
    assert not (tmp_path / "artifacts").exists() and not (ROOT / "s3:").exists(), "nothing written locally"


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "runs/../../escape", "runs//x.json", "runs/./x.json",
                                 "runs\\..\\x.json", ""])
def test_a_local_store_refuses_a_key_that_is_not_below_it(tmp_path: Path, key: str) -> None:
    """Keys are checked, not resolved: a key with an empty, '.' or '..' part, an absolute one or one with a
    backslash is refused; its close neighbour, a plain relative key, lands below the store's root."""
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(ValueError, match="not a relative key"):
        store.write_bytes(key, b"x")
    ref = store.write_bytes("runs/x.json", b"x")
    assert store.path(ref) == (tmp_path / "store").resolve() / "runs" / "x.json" and store.read_bytes(ref) == b"x"


async def test_a_run_id_that_could_escape_its_keys_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_TEMPORAL_ADDRESS"] = "127.0.0.1:9"  # refused before anything connects
    for bad in ("../other-run", "a/b", "x" * 101, " spaced"):
        done = await tollgate_cli(env, "run", str(ARTICLE / "crm_contacts.csv"), str(ARTICLE / "crm_opportunities.csv"),
                                  "--run-id", bad)
        assert done.returncode == 2 and "is not allowed" in done.stderr, (bad, done.stderr)


def test_prune_deletes_runs_past_the_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    import time as clock

    from client.prune import prune

    store = ArtifactStore(tmp_path / "store")
    for run in ("old-run", "new-run"):
        store.write_bytes(f"runs/{run}/report/report.md", b"r")
        store.write_bytes(f"runs/{run}/data/contacts/chunk-00000.parquet", b"c")
    store.write_bytes("reuse/ab/abc.json", b"{}")
    past = clock.time() - 40 * 86_400
    for path in [*(store.root / "runs" / "old-run").rglob("*"), store.root / "reuse" / "ab" / "abc.json"]:
        os.utime(path, (past, past))
    planned = prune(store, 30, dry_run=True)
    assert planned.runs == ["old-run"] and planned.files == 3 and store.exists("runs/old-run/report/report.md")
    done = prune(store, 30)
    assert done.runs == ["old-run"] and not store.exists("runs/old-run/report/report.md")
    assert store.exists("runs/new-run/report/report.md") and not store.exists("reuse/ab/abc.json")
