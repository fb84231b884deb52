"""A scripted OpenAI-compatible chat server: the tests and the benchmarks run the real client path (Agno ->
openai -> HTTP) against it, and anyone can load-test a stack with it, no model needed.

It answers like a competent model by default, computing labels from the prompt with simple rules, and can be
scripted per run, step and agent to misbehave: invent ids, cite wrong figures, return malformed JSON, fail with
HTTP 500 or 429, or answer slowly. The nth request for a (run, step, agent) gets the nth scripted behaviour;
the last one repeats. Every request is recorded. ``latency`` makes every answer take that long, so that a
benchmark knows the model's share of a run exactly.

    python -m deploy.scripted_model --port 8099 --latency 1.0
    TOLLGATE_LLM_PROVIDER=openai-compatible TOLLGATE_LLM_BASE_URL=http://127.0.0.1:8099/v1 \
        TOLLGATE_LLM_MODEL=scripted tollgate dev
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
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
    answered: float = 0.0  # when the answer was sent (monotonic), 0 while in flight

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
    latency: float = 0.0  # seconds every answer takes (benchmarks: the LLM's share of a run is then known)

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

    def start(self, port: int = 0) -> ScriptedLlm:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive, as a provider's endpoint does: a client's pooled connection is reused, not opened per call
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACK)

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
                if owner.latency:
                    time.sleep(owner.latency)
                if behaviour.startswith("slow:"):
                    time.sleep(float(behaviour.split(":", 1)[1]))
                    behaviour = "correct"
                if behaviour == "trickle":  # headers, then a byte a second, never finishing
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "1000000")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for _ in range(600):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(1.0)
                    return
                if behaviour == "http_500":
                    self._send(500, {"error": {"message": "scripted server error", "code": "server_error"}})
                    return
                if behaviour == "http_401":
                    self._send(401, {"error": {"message": "scripted bad key", "code": "invalid_api_key"}})
                    return
                if behaviour == "not_a_completion":  # a 200 whose body is no chat completion (a proxy's page)
                    self._send(200, {"status": "ok", "detail": "scripted: not a chat completion"})
                    return
                if behaviour == "http_429":
                    self._send(429, {"error": {"message": "scripted rate limit", "code": "rate_limit"}},
                               {"Retry-After": "1"})
                    return
                if behaviour == "sparse":  # a correct answer with only what a minimal server sends: no id, no usage
                    self._send(200, {"choices": [{"message": {"role": "assistant",
                                                              "content": answer(request, "correct")}}]})
                    request.answered = time.monotonic()
                    return
                try:
                    content = answer(request, behaviour)
                except ValueError as error:  # not one of Tollgate's agents: nothing to script
                    self._send(400, {"error": {"message": str(error), "code": "unknown_agent"}})
                    return
                self._send(200, {
                    "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(request.prompt) // 4, "completion_tokens": len(content) // 4,
                              "total_tokens": (len(request.prompt) + len(content)) // 4},
                })
                request.answered = time.monotonic()

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

        self.server = _Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away between requests on its kept-alive connection (a worker killed, as crash tests
        and benchmarks intend) is not an error of the server's; anything else is reported as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


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
    """'mid or junior' -> 'mid'; 'mid (junior only if …)' -> 'mid'; 'executive, operations or support' ->
    'executive'."""
    return options.split(" (")[0].replace(" or ", ", ").split(", ")[0]


def _opportunity_label(row: dict[str, Any]) -> dict[str, Any]:
    """A compliant model: the first risk its deal allows, a reason naming the stage, a step forward."""
    stage = str(row.get("stage", ""))
    risk = _first(str(row.get("allowed_risk", "medium")))
    return {"id": str(row["id"]), "risk": risk, "reason": f"{stage} stage", "next_action": "schedule a review"}


def _facts(prompt: str) -> dict[str, str]:
    """The FACTS lines of an insights prompt: id -> value as written, and id:label -> label."""
    facts: dict[str, str] = {}
    for line in prompt.split("FACTS (", 1)[1].splitlines()[1:]:
        parts = line.split(" | ")
        if len(parts) != 4:
            break
        facts[parts[0]] = parts[2]
        facts[f"{parts[0]}:label"] = parts[1]
    return facts


def _amount(text: str) -> int:
    return int(float(text.replace("$", "").replace(",", "")))


def answer(request: Request, behaviour: str) -> str:
    prompt = request.prompt
    if behaviour == "malformed_json":
        return '{"contacts": [ {"id": '
    if request.agent == "contact-enricher":
        labels = [_contact_label(row) for row in _json_lines(prompt, "CONTACTS (")]
        if behaviour == "invent_ids" and labels:
            labels[-1] = {**labels[-1], "id": "99999"}
        if behaviour == "all_junior":
            labels = [{**label, "seniority": "junior"} for label in labels]
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
        facts = _facts(prompt)
        pipeline = facts["open_pipeline_value"]
        if behaviour == "wrong_figure":
            pipeline = f"${_amount(pipeline) + 1000:,}"
        insights = [
            {"title": "Open pipeline", "text": f"The open pipeline stands at {pipeline}.", "kind": "total",
             "facts": ["open_pipeline_value"], "entity": None},
            {"title": "Contacts", "text": f"The export holds {facts['contacts']} contacts.", "kind": "total",
             "facts": ["contacts"], "entity": None},
        ]
        leader = next((i for i in facts if i == "rank:companies_by_contacts:1"), None)
        if leader:
            company = facts[f"{leader}:label"].split(": ", 1)[1]
            insights.append({"title": "Largest account", "text": f"{company} has the most contacts.",
                             "kind": "ranking", "facts": [leader], "entity": company})
        else:
            insights.append({"title": "Opportunities", "text": f"There are {facts['opportunities']} opportunities.",
                             "kind": "total", "facts": ["opportunities"], "entity": None})
        return json.dumps({"insights": insights})
    if request.agent == "validator":
        if behaviour == "ai_reject":
            schema = request.body["response_format"]["json_schema"]["schema"]
            id_schema = schema["$defs"]["Problem"]["properties"]["id"]
            ids = id_schema.get("enum") or [id_schema["const"]]  # a sample of one is a const
            return json.dumps({"problems": [{"id": ids[0], "reason": "the rationale does not fit the record"}]})
        return json.dumps({"problems": []})
    raise ValueError(f"no scripted answer for agent {request.agent!r}: it answers Tollgate's agents, named in the "
                     "X-Tollgate-Agent header its workers send")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploy.scripted_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (default 8099)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every answer takes (default 0)")
    args = parser.parse_args()
    server = ScriptedLlm(latency=args.latency).start(args.port)
    print(f"scripted model at {server.base_url} (model name: any), {args.latency:g} s an answer", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
