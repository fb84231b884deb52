"""Temporal's remote codec endpoint for the Web UI: ``POST /decode`` (and ``/encode``) with ``{"payloads": [...]}``.

Point the UI's "Codec Server" setting at it (http://127.0.0.1:8888) and tick "pass the user's access token"; with
``TOLLGATE_CODEC_TOKEN`` set, only a request bearing ``Authorization: Bearer <token>`` is answered, so payloads are
decrypted only for those who hold it. CORS admits the UI's origin only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payload

from shared.codec import EncryptionCodec, Keyring

MAX_BODY = 4 * 1024 * 1024


def _payloads(body: dict[str, Any]) -> list[Payload]:
    return [ParseDict(item, Payload()) for item in body.get("payloads", [])]


def make_handler(keyring: Keyring, token: str | None, origin: str) -> type[BaseHTTPRequestHandler]:
    codec = EncryptionCodec(keyring)

    class Handler(BaseHTTPRequestHandler):
        def _headers(self, status: int, length: int = 0) -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Namespace")
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_OPTIONS(self) -> None:
            self._headers(200)

        def do_POST(self) -> None:
            if self.path not in ("/decode", "/encode"):
                self._headers(404)
                return
            if token is not None:
                given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if not hmac.compare_digest(given.encode(), token.encode()):
                    self._headers(401)
                    return
            length = int(self.headers.get("Content-Length", "0"))
            if length > MAX_BODY:
                self._headers(413)
                return
            try:
                payloads = _payloads(json.loads(self.rfile.read(length) or b"{}"))
                run = codec.decode if self.path == "/decode" else codec.encode
                result = asyncio.run(run(payloads))
            except Exception:  # a payload this keyring cannot open: say so without detail
                self._headers(400)
                return
            data = json.dumps({"payloads": [MessageToDict(p) for p in result]}).encode()
            self._headers(200, len(data))
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # no request lines: they would only repeat paths

    return Handler


def codec_server(keyring: Keyring, host: str, port: int, token: str | None,
                 origin: str = "http://localhost:8233") -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), make_handler(keyring, token, origin))


def serve_codec(keyring: Keyring, host: str, port: int, token: str | None, origin: str) -> None:
    server = codec_server(keyring, host, port, token, origin)
    print(f"codec server on http://{host}:{port} (decode and encode; "
          f"{'token required' if token else 'no token: anyone who reaches it can decode'})", flush=True)
    server.serve_forever()

