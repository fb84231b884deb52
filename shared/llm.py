"""One way to ask a model for a structured answer, whichever provider serves it.

Agno runs the agent; this module picks the model from the settings, bounds the request (temperature 0, fixed
seed, capped tokens), tags it with the step it serves, and turns provider failures into Temporal errors with the
right retry behaviour: a 429 waits as long as its Retry-After says, a 5xx or a dropped connection is retried with
backoff, a rejected request (400, 401, 403, 404) is not retried at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from shared import answer_schema
from shared.answer_schema import Schema
from shared.contracts import TokenUsage
from shared.settings import Settings
from shared.telemetry import tracer, untraced
from shared.temporal import heartbeating

if TYPE_CHECKING:
    from openai import AsyncOpenAI

M = TypeVar("M", bound=BaseModel)

GEN_AI_SYSTEMS = {"openai": "openai", "openai-compatible": "openai", "local": "llama.cpp"}

LOCAL_MODEL_IDS = {
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "qwen2.5-coder-1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m",
}


@dataclass(frozen=True)
class LlmCall:
    """Who is asking: the headers let a proxy, a trace or a scripted test server tell the steps apart."""

    run_id: str
    step: str
    attempt: int
    agent: str

    def headers(self) -> dict[str, str]:
        return {
            "X-Tollgate-Run": self.run_id,
            "X-Tollgate-Step": self.step,
            "X-Tollgate-Attempt": str(self.attempt),
            "X-Tollgate-Agent": self.agent,
        }


@dataclass
class StructuredAnswer(Generic[M]):
    value: M | None
    schema_error: str | None
    usage: TokenUsage


@dataclass
class _LastResponse:
    status: int | None = None
    retry_after: str | None = None
    finish_reason: str | None = None


_last_response: contextvars.ContextVar[_LastResponse | None] = contextvars.ContextVar(
    "tollgate_last_llm_response", default=None
)


async def _record_response(response: httpx.Response) -> None:
    record = _last_response.get()
    if record is not None:
        record.status = response.status_code
        record.retry_after = response.headers.get("retry-after")
        if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
            body = await response.aread()  # cached by httpx: the openai client reads the same bytes
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                record.finish_reason = json.loads(body)["choices"][0]["finish_reason"]


@dataclass
class ModelEndpoint:
    provider: str
    model_id: str
    base_url: str | None
    api_key: str = field(repr=False)
    http_client: httpx.AsyncClient = field(repr=False)
    # hosted OpenAI: the openai SDK client every call's model shares (the first call makes it): a client a call paid
    # for its own set-up and, once per client, a hop to a thread to read the platform it runs on
    # (docs/benchmarks.md). Other endpoints are called on ``http_client`` directly (shared.chat_client).
    provider_client: AsyncOpenAI | None = field(default=None, repr=False)


def resolve_endpoint(settings: Settings) -> ModelEndpoint:
    """The model the settings select; an incomplete configuration fails with what to set."""
    provider = settings.resolved_provider()
    client = httpx.AsyncClient(
        # each read a little longer than the whole call's deadline (ask_structured), so that a silent endpoint is
        # reported as that deadline (LlmTimeout) whichever client sends the request; a refused connection fails fast
        timeout=httpx.Timeout(settings.llm_timeout_seconds + 5.0, connect=10.0),
        event_hooks={"response": [_record_response]},
    )
    if provider == "openai":
        key = settings.llm_api_key or settings.openai_api_key
        if key is None:
            raise ValueError("TOLLGATE_LLM_PROVIDER=openai needs OPENAI_API_KEY")
        return ModelEndpoint(provider, settings.llm_model or "gpt-4o-mini", settings.llm_base_url,
                             key.get_secret_value(), client)
    if provider == "openai-compatible":
        if not settings.llm_base_url or not settings.llm_model:
            raise ValueError(
                "TOLLGATE_LLM_PROVIDER=openai-compatible needs TOLLGATE_LLM_BASE_URL and TOLLGATE_LLM_MODEL"
            )
        token = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
        return ModelEndpoint(provider, settings.llm_model, settings.llm_base_url, token, client)
    base_url = settings.llm_base_url or f"http://127.0.0.1:{settings.local_model_port}/v1"
    return ModelEndpoint(provider, LOCAL_MODEL_IDS[settings.local_model], base_url, "not-needed", client)


def _build_model(endpoint: ModelEndpoint, settings: Settings, call: LlmCall, max_tokens: int,
                 response_format: Schema) -> Any:
    common: dict[str, Any] = {
        "id": endpoint.model_id,
        "api_key": endpoint.api_key,
        # Greedy on the first attempt; a retry samples a little, with its own fixed seed, so that it can leave the
        # answer the gate rejected instead of reproducing it token for token. Still reproducible run to run.
        "temperature": 0.0 if call.attempt <= 1 else settings.llm_retry_temperature,
        "seed": settings.llm_seed + call.attempt - 1,
        "max_tokens": max_tokens,
        "max_retries": 0,  # Temporal owns retries, so that every one is visible and bounded
        "http_client": endpoint.http_client,
        "extra_headers": call.headers(),
        # The answer's schema goes into the request body as it is. Given to Agno as the agent's output schema it
        # reached the same field, but through the openai client's conversion of typed request parameters, which
        # walks every node of the schema (an enum of the call's ids, a property a label) against its type hints:
        # 0.15 ms of a 2.5 ms call's CPU for nothing, as a plain dict needs no conversion (docs/benchmarks.md). The
        # answer is read here instead of by Agno (parse_structured), as leniently.
        "extra_body": {"response_format": response_format},
    }
    if endpoint.provider != "openai":
        # a local model server or another OpenAI-compatible endpoint: the request goes out on the endpoint's own
        # HTTP client, not through the openai SDK (shared.chat_client: 0.7 ms of CPU a call less)
        from shared.chat_client import DirectChat

        return DirectChat(base_url=endpoint.base_url, **common)
    from agno.models.openai import OpenAIChat

    model = OpenAIChat(base_url=endpoint.base_url, async_client=endpoint.provider_client, **common)
    if endpoint.provider_client is None:
        endpoint.provider_client = model.get_async_client()  # made by Agno from the settings above, as before
    return model


class _WarmUpItem(BaseModel):
    id: str


class _WarmUpAnswer(BaseModel):
    items: list[_WarmUpItem]


_WARM_UP_ANSWER = {
    "id": "chatcmpl-warm-up", "object": "chat.completion", "created": 0, "model": "warm-up",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": '{"items": [{"id": "warm-up"}]}'}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def warm_up(endpoint: ModelEndpoint, settings: Settings) -> None:
    """Pay at start-up what the first model call would pay: one whole structured call through the agent framework
    and the provider client (their imports, their lazily loaded parts, a schema and an answer parsed), answered in
    process by a stand-in transport, so nothing reaches the provider. Measured: the first chunk's analysis and
    validation each took about 70 ms longer than the next run's when only the imports were warmed
    (docs/benchmarks.md)."""
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_WARM_UP_ANSWER)

    offline = ModelEndpoint(endpoint.provider, endpoint.model_id, endpoint.base_url or "http://warm-up.invalid/v1",
                            "warm-up", httpx.AsyncClient(transport=httpx.MockTransport(answer),
                                                         event_hooks={"response": [_record_response]}))
    item = answer_schema.obj("Item", {"id": answer_schema.choice(["warm-up"], "id")})
    schema = answer_schema.response_format(answer_schema.list_answer("WarmUp", "items", item, max_items=1,
                                                                     min_items=1))

    async def ask() -> StructuredAnswer[_WarmUpAnswer]:
        try:
            return await ask_structured(offline, settings, LlmCall("warm-up", "warm-up", 1, "warm-up"),
                                        instructions="Reply with JSON only.", prompt="warm up",
                                        request_schema=schema, answer_type=_WarmUpAnswer, max_tokens=16)
        finally:
            await offline.http_client.aclose()

    with untraced():  # no run's call: no span in any trace
        warmed = asyncio.run(ask())
    if warmed.value is None:  # the stand-in's answer must read back, or the warm-up warmed nothing
        raise RuntimeError(f"the model client's warm-up did not read its answer: {warmed.schema_error}")


def _retry_after(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        return None


def _provider_failure(call: LlmCall, record: _LastResponse, detail: str) -> ApplicationError:
    tries = f", try {activity.info().attempt}" if activity.in_activity() else ""
    where = f"LLM call for {call.step} (gate attempt {call.attempt}{tries})"
    if record.status == 429:
        delay = _retry_after(record.retry_after)
        return ApplicationError(
            f"{where} was rate limited (429); retrying after {delay or 'backoff'}",
            type="LlmRateLimited",
            next_retry_delay=delay,
        )
    if record.status in (400, 401, 403, 404, 422):
        return ApplicationError(
            f"{where} was rejected by the provider ({record.status}): {detail}",
            type="LlmRequestRejected",
            non_retryable=True,
        )
    status = f"HTTP {record.status}" if record.status else "no response"
    return ApplicationError(f"{where} failed ({status}): {detail}", type="LlmUnavailable")


def _lenient_json(content: str) -> Any:
    """What Agno reads out of an answer that is not bare JSON (in a code fence, after a <think> block), or None."""
    from agno.utils.string import parse_response_dict_str

    with contextlib.suppress(ValueError, TypeError):
        return parse_response_dict_str(content)
    return None


def parse_structured(content: Any, schema: type[M]) -> tuple[M | None, str | None]:
    """Validate what the model returned against the schema; the error text is meant for the model to read. An
    answer that is not bare JSON is read as Agno reads structured output (a code fence, a <think> block)."""
    if isinstance(content, schema):
        return content, None
    if content is None:
        return None, "the answer was empty"
    if isinstance(content, str):
        try:
            return schema.model_validate_json(content), None
        except ValidationError as error:
            if error.errors()[0]["type"] != "json_invalid" or (found := _lenient_json(content)) is None:
                return None, _schema_error(error)
            content = found
    try:
        if isinstance(content, BaseModel):
            return schema.model_validate(content.model_dump()), None
        return schema.model_validate(content), None
    except ValidationError as error:
        return None, _schema_error(error)
    except (TypeError, json.JSONDecodeError) as error:
        return None, f"the answer was not valid JSON: {error}"


def _schema_error(error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in issue['loc']) or 'answer'}: {issue['msg']}" for issue in error.errors()[:8]
    )
    return f"the answer did not match the required JSON schema: {problems}"


async def ask_structured(
    endpoint: ModelEndpoint,
    settings: Settings,
    call: LlmCall,
    *,
    instructions: str,
    prompt: str,
    request_schema: Schema,
    answer_type: type[M],
    max_tokens: int,
) -> StructuredAnswer[M]:
    """Run one Agno agent turn constrained by ``request_schema`` (a ``response_format``, shared.answer_schema) and
    read it as ``answer_type``.

    The request schema is stricter than the answer type (enums of the chunk's ids), so that a model
    without grammar support that breaks it still yields an answer the gate can judge and explain.
    Provider failures raise ApplicationError.
    """
    from agno.agent import Agent
    from agno.run.base import RunStatus

    record = _LastResponse()
    token = _last_response.set(record)
    # A span per LLM call, after the OpenTelemetry GenAI conventions. No prompt, record or key goes in it.
    with tracer().start_as_current_span(f"chat {endpoint.model_id}", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.system": GEN_AI_SYSTEMS.get(endpoint.provider, "openai"),
        "gen_ai.request.model": endpoint.model_id,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": 0.0 if call.attempt <= 1 else settings.llm_retry_temperature,
        "tollgate.run_id": call.run_id, "tollgate.step": call.step, "tollgate.attempt": call.attempt,
        "tollgate.agent": call.agent,
    }) as span:
        if settings.trace_content:  # off unless asked for: prompts quote CRM records
            span.set_attribute("gen_ai.prompt", f"{instructions}\n\n{prompt}"[:8000])
        try:
            agent = Agent(
                name=call.agent,
                model=_build_model(endpoint, settings, call, max_tokens, request_schema),
                instructions=instructions,
                telemetry=False,
                markdown=False,
            )
            # httpx's timeout bounds each read; an endpoint that trickles bytes forever passes every read, so the
            # whole call has a deadline too
            try:
                async with asyncio.timeout(settings.llm_timeout_seconds):
                    if activity.in_activity():
                        async with heartbeating():
                            run = await agent.arun(prompt)
                    else:
                        run = await agent.arun(prompt)
            except TimeoutError:
                tries = f", try {activity.info().attempt}" if activity.in_activity() else ""
                span.set_status(Status(StatusCode.ERROR, "LlmTimeout"))
                raise ApplicationError(
                    f"LLM call for {call.step} (gate attempt {call.attempt}{tries}) had no complete answer within "
                    f"{settings.llm_timeout_seconds:g} s (TOLLGATE_LLM_TIMEOUT_SECONDS): the endpoint hung or kept "
                    "streaming", type="LlmTimeout") from None
        finally:
            _last_response.reset(token)
        metrics = run.metrics
        usage = TokenUsage(
            calls=1,
            input_tokens=int(getattr(metrics, "input_tokens", 0) or 0),
            output_tokens=int(getattr(metrics, "output_tokens", 0) or 0),
            cost_usd=settings.cost_of(endpoint.provider, endpoint.model_id, metrics),
        )
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        if record.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [record.finish_reason])
        if run.status == RunStatus.error:
            if record.status is not None and record.status < 300:
                # The provider answered; what failed was reading the answer, which the gate handles.
                span.set_attribute("tollgate.schema_error", True)
                return StructuredAnswer(None, f"the answer could not be read: {run.content}", usage)
            failure = _provider_failure(call, record, str(run.content)[:300])
            span.set_status(Status(StatusCode.ERROR, failure.type or "error"))
            if record.status:
                span.set_attribute("http.response.status_code", record.status)
            raise failure
        value, error = parse_structured(run.content, answer_type)
        span.set_attribute("tollgate.schema_error", error is not None)
        return StructuredAnswer(value, error, usage)
