"""A scripted OpenAI-compatible chat server, so tests run the real client path (Agno -> openai -> HTTP).

It answers like a competent model by default, computing labels from the prompt with simple rules, and can be
scripted per run, step and agent to misbehave: invent ids, cite wrong figures, return malformed JSON, fail with
HTTP 500 or 429, or answer slowly. The nth request for a (run, step, agent) gets the nth scripted behaviour;
the last one repeats. Every request is recorded for assertions.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    run: str
    step: str
    agent: str
    attempt: int
    body: dict[str, Any]
    received: float = field(default_factory=time.monotonic)

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


@dataclass
class ScriptedLlm:
    scripts: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def script(self, run: str, step: str, agent: str, behaviours: list[str]) -> None:
        """Script the behaviour of the nth request of ``agent`` for ``step`` in ``run``."""
        with self._lock:
            self.scripts[(run, step, agent)] = behaviours

    def requests_for(self, run: str, step: str | None = None, agent: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if r.run == run and (step is None or r.step == step) and (agent is None or r.agent == agent)]

    def _behaviour(self, request: Request) -> str:
        key = (request.run, request.step, request.agent)
        with self._lock:
            self.requests.append(request)
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
            script = (self.scripts.get(key) or self.scripts.get((request.run, "*", request.agent))
                      or self.scripts.get(("*", request.step, request.agent)))
        if not script:
            return "correct"
        return script[min(n, len(script) - 1)]

    def start(self) -> ScriptedLlm:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                request = Request(
                    run=self.headers.get("X-Tollgate-Run", ""), step=self.headers.get("X-Tollgate-Step", ""),
                    agent=self.headers.get("X-Tollgate-Agent", ""),
                    attempt=int(self.headers.get("X-Tollgate-Attempt", "0")), body=body,
                )
                behaviour = owner._behaviour(request)
                if behaviour.startswith("slow:"):
                    time.sleep(float(behaviour.split(":", 1)[1]))
                    behaviour = "correct"
                if behaviour == "http_500":
                    self._send(500, {"error": {"message": "scripted server error", "code": "server_error"}})
                    return
                if behaviour == "http_401":
                    self._send(401, {"error": {"message": "scripted bad key", "code": "invalid_api_key"}})
                    return
                if behaviour == "http_429":
                    self._send(429, {"error": {"message": "scripted rate limit", "code": "rate_limit"}},
                               {"Retry-After": "1"})
                    return
                content = answer(request, behaviour)
                self._send(200, {
                    "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(request.prompt) // 4, "completion_tokens": len(content) // 4,
                              "total_tokens": (len(request.prompt) + len(content)) // 4},
                })

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError):  # a client killed mid-request, as crash tests intend
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _json_lines(prompt: str, marker: str) -> list[dict[str, Any]]:
    section = prompt.split(marker, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if not line.startswith("{"):
            break
        rows.append(json.loads(line))
    return rows


def _contact_label(row: dict[str, Any]) -> dict[str, Any]:
    """A compliant model: it takes the first label each title allows, guessing a department where none is given
    from a few words of its own (not the validator's taxonomy)."""
    title = str(row.get("title", ""))
    allowed = row.get("allowed", {})
    seniority = _first(allowed.get("seniority", "mid"))
    lowered = title.lower()
    guess = ("executive" if seniority == "executive" else "sales" if "sales" in lowered
             else "engineering" if re.search(r"eng|develop", lowered) else "other")
    department = _first(allowed.get("department", guess))
    maker = _first(allowed.get("decision_maker", "false")) == "true"
    return {"id": str(row["id"]), "seniority": seniority, "department": department, "decision_maker": maker,
            "rationale": f"title {title or 'blank'}"[:40]}


def _first(options: str) -> str:
    """'mid or junior' -> 'mid'; 'executive, operations or support' -> 'executive'."""
    return options.replace(" or ", ", ").split(", ")[0]


def _opportunity_label(row: dict[str, Any]) -> dict[str, Any]:
    """A compliant model: the first risk its deal allows, a reason naming the stage, a step forward."""
    stage = str(row.get("stage", ""))
    risk = _first(str(row.get("allowed_risk", "medium")))
    return {"id": str(row["id"]), "risk": risk, "reason": f"{stage} stage", "next_action": "schedule a review"}


def answer(request: Request, behaviour: str) -> str:
    prompt = request.prompt
    if behaviour == "malformed_json":
        return '{"contacts": [ {"id": '
    if request.agent == "contact-enricher":
        labels = [_contact_label(row) for row in _json_lines(prompt, "CONTACTS (")]
        if behaviour == "invent_ids" and labels:
            labels[-1] = {**labels[-1], "id": "99999"}
        if behaviour == "mislabel_executive":
            labels = [{**label, "seniority": "junior"} if label["seniority"] == "executive" else label
                      for label in labels]
        return json.dumps({"contacts": labels})
    if request.agent == "opportunity-risk":
        risks = [_opportunity_label(row) for row in _json_lines(prompt, "OPPORTUNITIES (")]
        if behaviour == "invent_ids" and risks:
            risks[-1] = {**risks[-1], "id": "O-99999"}
        return json.dumps({"opportunities": risks})
    if request.agent == "insights":
        figures = json.loads(prompt.split("FIGURES: ", 1)[1].splitlines()[0])
        pipeline = figures["pipeline_value"] + (1000 if behaviour == "wrong_figure" else 0)
        insights = [
            {"title": "Pipeline concentration", "detail": "Most value sits in a few deals.",
             "citations": [{"fact": "pipeline_value", "value": pipeline}], "companies": [], "opportunities": []},
            {"title": "Win rate by value", "detail": "Won deals carry a large share of value.",
             "citations": [{"fact": "win_rate_by_value_pct", "value": figures["win_rate_by_value_pct"]}],
             "companies": [], "opportunities": []},
            {"title": "Contact coverage", "detail": "Contacts spread over several companies.",
             "citations": [{"fact": "total_contacts", "value": figures["total_contacts"]},
                           {"fact": "unique_companies", "value": figures["unique_companies"]}],
             "companies": [], "opportunities": []},
        ]
        return json.dumps({"insights": insights})
    if request.agent == "validator":
        if behaviour == "ai_reject":
            schema = request.body["response_format"]["json_schema"]["schema"]
            ids = schema["$defs"]["Problem"]["properties"]["id"]["enum"]
            return json.dumps({"problems": [{"id": ids[0], "reason": "the rationale does not fit the record"}]})
        return json.dumps({"problems": []})
    raise ValueError(f"no scripted answer for agent {request.agent!r}")
