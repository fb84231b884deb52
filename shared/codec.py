"""CRM data at rest in Temporal: every payload it stores is encrypted (AES-256-GCM), and failure messages with it.

A payload is replaced by one whose metadata says ``binary/encrypted`` and names the key it was sealed with
(``encryption-key-id``) and whose data is a fresh 12-byte nonce followed by the ciphertext of the original payload.
Keys form a keyring: the first key seals new payloads, every key opens what it sealed, so a rotation (a new key
first, the old ones kept) leaves old runs readable. The keyring comes from ``TOLLGATE_PAYLOAD_KEYS``
(``id:base64key,id:base64key``) or the JSON file ``TOLLGATE_PAYLOAD_KEY_FILE``; ``tollgate dev`` and the demo
create a local key file on first start. A process without a key refuses to start unless encryption is turned off
on purpose (``TOLLGATE_ENCRYPT_PAYLOADS=false``).

The same keyring seals the text of progress events that can quote CRM fields (``shared.events.seal``), so the Redis
streams carry no CRM value in clear either; ``tollgate watch`` opens them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE = 12
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyringError(RuntimeError):
    """The keyring is missing, malformed, or lacks the key a payload names."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    current: str

    def seal(self, plain: bytes, context: bytes = b"") -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE)
        return self.current, nonce + AESGCM(self.keys[self.current]).encrypt(nonce, plain, context or None)

    def open(self, key_id: str, sealed: bytes, context: bytes = b"") -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyringError(f"no key {key_id!r} in the keyring (it has {', '.join(sorted(self.keys))}); a payload "
                            "sealed with a retired key needs that key kept in TOLLGATE_PAYLOAD_KEYS")
        try:
            return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], context or None)
        except InvalidTag:
            raise KeyringError(f"key {key_id!r} does not open this payload: a different key under the same id, or "
                               "the data was altered") from None


def parse_keyring(text: str) -> Keyring:
    """``id:base64key,id:base64key`` (the first seals), or the same as a JSON list of {"id", "key"}."""
    entries: list[tuple[str, str]] = []
    stripped = text.strip()
    if stripped.startswith("["):
        entries = [(item["id"], item["key"]) for item in json.loads(stripped)]
    else:
        for part in filter(None, (p.strip() for p in stripped.split(","))):
            key_id, _, encoded = part.partition(":")
            entries.append((key_id.strip(), encoded.strip()))
    keys: dict[str, bytes] = {}
    for key_id, encoded in entries:
        if not KEY_ID_PATTERN.match(key_id):
            raise KeyringError(f"key id {key_id[:70]!r}: use 1-64 letters, digits, '.', '_' or '-'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise KeyringError(f"key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise KeyringError(f"key {key_id!r} has {len(key)} bytes; AES-256 needs 32 (`tollgate keygen` makes one)")
        keys[key_id] = key
    if not keys:
        raise KeyringError("the keyring is empty")
    return Keyring(keys=keys, current=entries[0][0])


def new_key_entry(key_id: str | None = None) -> dict[str, str]:
    return {"id": key_id or f"k{secrets.token_hex(4)}", "key": base64.b64encode(secrets.token_bytes(32)).decode()}


def ensure_local_key_file(path: Path) -> Path:
    """A keyring file for one machine (``tollgate dev``, the demo), created with one key on first use, mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump([new_key_entry()], handle)
    return path


def keyring_from(settings: Any) -> Keyring | None:
    """The keyring the settings give, None when encryption is off; a missing keyring is an error that says what to
    set, never a silent fall back to clear text."""
    if not settings.encrypt_payloads:
        return None
    if settings.payload_keys is not None:
        return parse_keyring(settings.payload_keys.get_secret_value())
    path = Path(settings.payload_key_file)
    if path.is_file():
        return parse_keyring(path.read_text())
    raise KeyringError(f"payload encryption is on but no key is set: set TOLLGATE_PAYLOAD_KEYS (id:base64 32-byte "
                       f"key; `tollgate keygen` prints one) or TOLLGATE_PAYLOAD_KEY_FILE (no file at {path}; "
                       "`tollgate dev` creates one), or turn encryption off on purpose with "
                       "TOLLGATE_ENCRYPT_PAYLOADS=false")


class EncryptionCodec(PayloadCodec):
    """Seals every payload with the keyring's current key; opens each with the key it names."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        sealed = []
        for payload in payloads:
            key_id, data = self.keyring.seal(payload.SerializeToString())
            sealed.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=data))
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        opened = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                opened.append(payload)  # written before encryption was on: read as it is
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            opened.append(Payload.FromString(self.keyring.open(key_id, payload.data)))
        return opened


def data_converter(base: DataConverter, keyring: Keyring | None) -> DataConverter:
    """``base`` with payloads sealed and failure messages and stack traces moved into (sealed) payloads."""
    if keyring is None:
        return base
    return replace(base, payload_codec=EncryptionCodec(keyring),
                   failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


def seal_text(keyring: Keyring, text: str) -> str:
    key_id, data = keyring.seal(text.encode(), b"tollgate-event")
    return f"{key_id}:{base64.b64encode(data).decode()}"


def open_text(keyring: Keyring, sealed: str) -> str:
    key_id, _, encoded = sealed.partition(":")
    return keyring.open(key_id, base64.b64decode(encoded), b"tollgate-event").decode()
