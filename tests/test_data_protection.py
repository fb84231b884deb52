"""CRM exports are personal data: a real run with marker values in every CRM text field and in the API key, then
every place the system writes is searched for them: the Temporal database, every service log, every exported span
and the Redis streams. Payload encryption is tested on its own too: rotation, a missing key, the codec endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import urllib.request
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.api.common.v1 import Payload

from deploy.scripted_model import ScriptedLlm
from shared.codec import EncryptionCodec, KeyringError, keyring_from, parse_keyring
from shared.settings import Settings
from tests.harness import make_stack, start_temporal, tollgate_cli


def key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


async def test_payloads_are_sealed_and_a_rotated_keyring_still_opens_old_ones() -> None:
    old = parse_keyring(key("k1"))
    sealed = await EncryptionCodec(old).encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"Ann Lee"')])
    assert b"Ann Lee" not in sealed[0].SerializeToString() and sealed[0].metadata["encryption-key-id"] == b"k1"
    rotated = parse_keyring(f"{key('k2')},{key('k1').split(':')[0]}:{base64.b64encode(old.keys['k1']).decode()}")
    assert rotated.current == "k2"
    [opened] = await EncryptionCodec(rotated).decode(sealed)
    assert opened.data == b'"Ann Lee"'
    resealed = await EncryptionCodec(rotated).encode([opened])
    assert resealed[0].metadata["encryption-key-id"] == b"k2"
    with pytest.raises(KeyringError, match="no key 'k2'"):
        await EncryptionCodec(old).decode(resealed)
    impostor = parse_keyring(key("k1"))  # another key under the same id: refused with a reason, not a crash
    with pytest.raises(KeyringError, match="does not open this payload"):
        await EncryptionCodec(impostor).decode(sealed)
    with pytest.raises(KeyringError, match="32"):
        parse_keyring("short:" + base64.b64encode(b"x" * 16).decode())


def test_a_process_without_a_key_refuses_to_start_unless_encryption_is_off(tmp_path: Path) -> None:
    settings = Settings(payload_key_file=tmp_path / "none.json")
    with pytest.raises(KeyringError, match="TOLLGATE_ENCRYPT_PAYLOADS=false"):
        keyring_from(settings.model_copy(update={"payload_keys": None}))
    assert keyring_from(settings.model_copy(update={"payload_keys": None, "encrypt_payloads": False})) is None


async def test_the_codec_endpoint_decodes_only_for_the_token_holder() -> None:
    from client.codec_server import codec_server
    from tests.harness import free_port

    keyring = parse_keyring(key("k1"))
    [sealed] = await EncryptionCodec(keyring).encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    port = free_port()
    server = codec_server(keyring, "127.0.0.1", port, "s3cret")
    thread = asyncio.get_running_loop().run_in_executor(None, server.serve_forever)
    from google.protobuf.json_format import MessageToDict

    def post(token: str) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/decode", method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            data=json.dumps({"payloads": [MessageToDict(sealed)]}).encode())
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, {}

    try:
        status, body = await asyncio.to_thread(post, "s3cret")
        assert status == 200
        assert base64.b64decode(body["payloads"][0]["data"]) == b'"x"'  # type: ignore[index]
        assert (await asyncio.to_thread(post, "wrong"))[0] == 401
    finally:
        server.shutdown()
        await thread


async def test_no_crm_value_or_secret_in_history_logs_spans_or_event_streams(
        scripted_llm: ScriptedLlm, redis_url: str, run_id: str, tmp_path: Path) -> None:
    tag = secrets.token_hex(4).upper()
    markers = {f"ZQXNAME{tag}", f"ZQXCO{tag}", f"ZQXTITLE{tag}", f"ZQXDEAL{tag}", f"ZQXNOTE{tag}", f"ZQXKEY{tag}"}
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,name,company,title,created_date,notes\n"
                        f"1,Ann ZQXNAME{tag},ZQXCO{tag} Ltd,Engineering Manager ZQXTITLE{tag},2024-01-01,ZQXNOTE{tag}\n"
                        f"2,Bob Roe,ZQXCO{tag} Ltd,Program Manager,2024-01-01,x\n")
    deals = tmp_path / "deals.csv"
    deals.write_text("id,name,stage,amount,contact_id,close_date,notes\n"
                     f"1,ZQXDEAL{tag} renewal,Negotiation,50000,1,2024-06-30,ZQXNOTE{tag}\n"
                     f"2,Other,Prospecting,25000,2,2024-07-15,y\n")
    # the gate rejects the first answer, quoting the title in its reasons; the retry passes
    scripted_llm.script(run_id, "contacts/chunk-00000", "contact-enricher", ["all_junior", "correct"])
    (tmp_path / "temporal").mkdir()
    temporal, address = start_temporal(tmp_path / "temporal" / "temporal.db")
    traces = tmp_path / "traces"
    stack = make_stack(address, scripted_llm, tmp_path, extra_env={"TOLLGATE_TRACE_DIR": str(traces)},
                       TOLLGATE_LLM_API_KEY=f"sk-ZQXKEY{tag}")
    try:
        done = await tollgate_cli({**stack.env, "TOLLGATE_TRACE_DIR": str(traces)}, "run", str(contacts), str(deals),
                                  "--wait", "--run-id", run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 fixed by a retry" in done.stdout  # the rejection, with its reasons, happened
    finally:
        stack.stop()
        temporal.terminate()
        temporal.wait(10)

    places: dict[str, bytes] = {}
    for path in (tmp_path / "temporal").iterdir():  # the database and its write-ahead log
        places[f"temporal:{path.name}"] = path.read_bytes()
    for path in stack.logs.glob("*.log"):
        places[f"log:{path.name}"] = path.read_bytes()
    spans = list(traces.glob("*"))
    assert spans, "the services wrote no spans"
    for path in spans:
        places[f"spans:{path.name}"] = path.read_bytes()
    redis = Redis.from_url(redis_url)
    try:
        for stream in (f"tollgate:run:{run_id}", "tollgate:runs"):
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
            places[f"redis:{stream}"] = b"\n".join(v for _id, fields in entries for v in fields.values())
    finally:
        await redis.aclose()
    assert places[f"redis:tollgate:run:{run_id}"], "no events to search"
    leaks = {(marker, place) for marker in markers for place, data in places.items()
             if marker.encode() in data or marker.lower().encode() in data}
    assert not leaks, sorted(leaks)
    # the columns the analysis does not use were not copied into the store
    chunks = b"".join(p.read_bytes() for p in (tmp_path / "artifacts" / "runs" / run_id / "data").rglob("chunk-*"))
    assert chunks and f"ZQXNOTE{tag}".encode() not in chunks and f"ZQXNAME{tag}".encode() in chunks
