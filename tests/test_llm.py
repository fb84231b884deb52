"""The LLM client path: provider selection, structured answers, and provider failures as Temporal errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from deploy.scripted_model import ScriptedLlm
from services.analyzer.agents import ContactLabels, contact_prompt, contact_request_schema
from shared.contracts import ContactRecord
from shared.llm import (
    LlmCall,
    ModelEndpoint,
    StructuredAnswer,
    ask_structured,
    parse_structured,
    resolve_endpoint,
)
from shared.settings import Settings
from tests.harness import free_port

PROMPT = contact_prompt([
    ContactRecord(id="1", name="A", company="Acme", title="CEO", created_date=None),
    ContactRecord(id="2", name="B", company="Acme", title="Intern", created_date=None),
], [])


def settings_for(llm: ScriptedLlm) -> Settings:
    return Settings(llm_provider="openai-compatible", llm_base_url=llm.base_url, llm_model="scripted",
                    llm_timeout_seconds=2)


async def label(settings: Settings, run: str, step: str = "contacts/chunk-00000", attempt: int = 1,
                ids: tuple[str, ...] = ("1", "2"), endpoint: ModelEndpoint | None = None
                ) -> StructuredAnswer[ContactLabels]:
    """One contact-labelling call of ``run``'s ``step``, on ``endpoint`` (a new one from the settings if none)."""
    return await ask_structured(
        endpoint or resolve_endpoint(settings), settings, LlmCall(run, step, attempt, "contact-enricher"),
        instructions="label", prompt=PROMPT, request_schema=contact_request_schema(list(ids)),
        answer_type=ContactLabels, max_tokens=100)


async def ask(llm: ScriptedLlm, run: str) -> ContactLabels | None:
    answer = await label(settings_for(llm), run)
    assert answer.usage.calls == 1 and answer.usage.input_tokens > 0
    return answer.value


async def test_structured_answer_through_agno_and_http(scripted_llm: ScriptedLlm) -> None:
    labels = await ask(scripted_llm, "llm-ok")
    assert labels is not None
    assert [(c.id, c.seniority, c.decision_maker) for c in labels.contacts] == [
        ("1", "executive", True), ("2", "junior", False)]
    [request] = scripted_llm.requests_for("llm-ok")
    body = request.body
    assert body["temperature"] == 0 and body["seed"] == 7 and body["max_tokens"] == 100
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["$defs"]["ContactLabel"]["properties"]["id"]["enum"] == ["1", "2"]
    assert schema["properties"]["contacts"]["minItems"] == schema["properties"]["contacts"]["maxItems"] == 2


def sdk_settings_for(llm: ScriptedLlm) -> Settings:
    """Hosted OpenAI's path (the openai SDK), pointed at the scripted server."""
    return Settings(llm_provider="openai", openai_api_key="sk-test", llm_base_url=llm.base_url, llm_model="scripted",
                    llm_timeout_seconds=2)


@pytest.mark.parametrize("provider", ["openai", "openai-compatible"])
async def test_calls_share_one_client_and_keep_their_own_request(scripted_llm: ScriptedLlm, provider: str) -> None:
    """Every call of an endpoint goes out on one client (hosted OpenAI: one openai SDK client, as a client a call cost
    its set-up and a hop to a thread; any other endpoint: the endpoint's own HTTP client, no SDK client at all);
    what differs between calls (the step in the headers, the attempt's temperature and seed, the schema's ids) still
    reaches the provider call by call, also when the calls run at once."""
    settings = sdk_settings_for(scripted_llm) if provider == "openai" else settings_for(scripted_llm)
    endpoint = resolve_endpoint(settings)
    run = f"llm-shared-{provider}"
    assert endpoint.provider_client is None

    async def one(step: str, attempt: int, ids: tuple[str, ...]) -> None:
        answer = await label(settings, run, step, attempt, ids, endpoint)
        assert answer.usage.calls == 1 and answer.value is not None

    await one("contacts/chunk-00000", 1, ("1", "2"))
    client = endpoint.provider_client
    assert (client is not None) is (provider == "openai")
    await asyncio.gather(one("contacts/chunk-00001", 2, ("1", "2")), one("contacts/chunk-00002", 1, ("1",)))
    assert endpoint.provider_client is client and not endpoint.http_client.is_closed
    seen = {(r.step, r.attempt): r.body for r in scripted_llm.requests_for(run)}
    assert set(seen) == {("contacts/chunk-00000", 1), ("contacts/chunk-00001", 2), ("contacts/chunk-00002", 1)}
    assert seen[("contacts/chunk-00001", 2)]["temperature"] == settings.llm_retry_temperature
    assert seen[("contacts/chunk-00001", 2)]["seed"] == settings.llm_seed + 1
    assert seen[("contacts/chunk-00002", 1)]["temperature"] == 0
    ids = seen[("contacts/chunk-00002", 1)]["response_format"]["json_schema"]["schema"]["$defs"]["ContactLabel"]
    assert ids["properties"]["id"]["const"] == "1"
    if provider == "openai":  # another endpoint (another worker's, or the warm-up's) has its own
        other = resolve_endpoint(settings)
        await label(settings, f"{run}-2", "s", endpoint=other)
        assert other.provider_client is not None and other.provider_client is not client


async def test_direct_request_is_the_one_the_sdk_sends(scripted_llm: ScriptedLlm,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenAI-compatible endpoint is called without the openai SDK (shared.chat_client): the same JSON body and
    the same step headers reach it as when Agno's same model class sends the request through the SDK, first
    attempts and retries alike."""
    from agno.models.openai.like import OpenAILike

    from shared.chat_client import DirectChat

    settings = settings_for(scripted_llm)
    bodies = {}
    for way in ("direct", "sdk"):
        if way == "sdk":
            monkeypatch.setattr(DirectChat, "ainvoke", OpenAILike.ainvoke)
        endpoint = resolve_endpoint(settings)
        for attempt in (1, 2):
            answer = await label(settings, f"llm-same-{way}", "contacts/chunk-00003", attempt, endpoint=endpoint)
            assert answer.value is not None and answer.usage.input_tokens > 0
        requests = scripted_llm.requests_for(f"llm-same-{way}")
        assert [(r.step, r.attempt, r.agent) for r in requests] == [
            ("contacts/chunk-00003", 1, "contact-enricher"), ("contacts/chunk-00003", 2, "contact-enricher")]
        bodies[way] = [r.body for r in requests]
    assert bodies["direct"] == bodies["sdk"]
    assert bodies["direct"][0]["response_format"]["type"] == "json_schema"
    assert bodies["direct"][0]["temperature"] == 0 and bodies["direct"][1]["temperature"] > 0


async def test_an_endpoint_that_refuses_connections_is_unavailable() -> None:
    """Nothing listens: the call fails at once as a provider failure Temporal retries with backoff."""
    settings = Settings(llm_provider="openai-compatible", llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
                        llm_model="scripted", llm_timeout_seconds=2)
    with pytest.raises(ApplicationError) as caught:
        await label(settings, "llm-refused", "s", ids=("1",))
    assert caught.value.type == "LlmUnavailable" and not caught.value.non_retryable
    assert "no response" in caught.value.message


@pytest.mark.parametrize(
    ("behaviour", "error_type", "non_retryable", "delay"),
    [
        ("http_429", "LlmRateLimited", False, timedelta(seconds=1)),
        ("http_500", "LlmUnavailable", False, None),
        ("http_401", "LlmRequestRejected", True, None),
        ("slow:4", "LlmTimeout", False, None),
    ],
)
async def test_provider_failures_map_to_retry_behaviour(scripted_llm: ScriptedLlm, behaviour: str, error_type: str,
                                                        non_retryable: bool, delay: timedelta | None) -> None:
    run = f"llm-{behaviour}"
    scripted_llm.script(run, "contacts/chunk-00000", "contact-enricher", [behaviour])
    with pytest.raises(ApplicationError) as caught:
        await ask(scripted_llm, run)
    assert caught.value.type == error_type
    assert caught.value.non_retryable is non_retryable
    assert caught.value.next_retry_delay == delay
    assert "contacts/chunk-00000 (gate attempt 1)" in caught.value.message


@pytest.mark.parametrize(("behaviour", "said"), [("malformed_json", "JSON"),
                                                 ("not_a_completion", "not a chat completion")])
async def test_an_unreadable_answer_is_returned_as_a_schema_error(scripted_llm: ScriptedLlm, behaviour: str,
                                                                  said: str) -> None:
    """A 200 the answer cannot be read from (broken JSON in a chat completion, or a body that is no chat completion
    at all, as a proxy's page) ends the call as an answer the gate judges and explains to the retry, not as a crash
    of the step nor as a provider failure retried in place."""
    run = f"llm-{behaviour}"
    scripted_llm.script(run, "contacts/chunk-00000", "contact-enricher", [behaviour])
    answer = await label(settings_for(scripted_llm), run)
    assert answer.value is None
    assert answer.schema_error is not None and said in answer.schema_error


async def test_a_sparse_chat_completion_is_read(scripted_llm: ScriptedLlm) -> None:
    """A server that answers with the choices alone (no id, model, timestamps nor usage) is read as the SDK reads
    it, leniently; a whole chat completion is read by validation, and both give the same labels."""
    settings = settings_for(scripted_llm)
    said = []
    for run, behaviour in (("llm-sparse", "sparse"), ("llm-whole", "correct")):
        scripted_llm.script(run, "contacts/chunk-00000", "contact-enricher", [behaviour])
        answer = await label(settings, run)
        assert answer.schema_error is None and answer.value is not None, behaviour
        said.append(answer.value)
    assert said[0] == said[1] and [one.id for one in said[0].contacts] == ["1", "2"]


class Pair(BaseModel):
    a: int
    b: str


def test_parse_structured_reports_fields() -> None:
    assert parse_structured('{"a": 1, "b": "x"}', Pair) == (Pair(a=1, b="x"), None)
    value, error = parse_structured('{"a": "one"}', Pair)
    assert value is None and error is not None
    assert "a: Input should be a valid integer" in error and "b: Field required" in error
    assert parse_structured(None, Pair) == (None, "the answer was empty")


def test_parse_structured_reads_json_as_agno_does() -> None:
    """Bare JSON is read directly; JSON in a code fence or after a <think> block is read as Agno's structured output
    reads it; what holds no JSON at all is an error that says so."""
    assert parse_structured('```json\n{"a": 1, "b": "x"}\n```', Pair) == (Pair(a=1, b="x"), None)
    assert parse_structured('<think>a is one</think>{"a": 1, "b": "x"}', Pair) == (Pair(a=1, b="x"), None)
    value, error = parse_structured("a is one and b is x", Pair)
    assert value is None and error is not None and "Invalid JSON" in error
    value, error = parse_structured('```json\n{"a": "one", "b": "x"}\n```', Pair)
    assert value is None and error is not None and "a: Input should be a valid integer" in error


def test_provider_selection() -> None:
    assert Settings(_env_file=None).resolved_provider() == "local"
    assert Settings(openai_api_key="sk-test").resolved_provider() == "openai"
    assert Settings(llm_base_url="http://x/v1").resolved_provider() == "openai-compatible"
    with pytest.raises(ValueError, match="needs TOLLGATE_LLM_BASE_URL and TOLLGATE_LLM_MODEL"):
        resolve_endpoint(Settings(llm_provider="openai-compatible"))
    endpoint = resolve_endpoint(Settings(openai_api_key="sk-test"))
    assert (endpoint.provider, endpoint.model_id) == ("openai", "gpt-4o-mini")
    assert "sk-test" not in repr(endpoint)


def test_cost_comes_from_the_price_table() -> None:
    class Metrics:
        input_tokens = 1_000_000
        output_tokens = 500_000

    settings = Settings()
    assert settings.cost_of("openai", "gpt-4o-mini", Metrics()) == 0.45  # 1M in at 0.15, 0.5M out at 0.60
    assert settings.cost_of("local", "gpt-4o-mini", Metrics()) == 0.0  # the embedded model is free
    assert settings.cost_of("openai-compatible", "my-vllm-model", Metrics()) == 0.0
    priced = Settings(prices={"my-vllm-model": (1.0, 2.0)})
    assert priced.cost_of("openai-compatible", "my-vllm-model", Metrics()) == 2.0


def test_unknown_is_never_offered_to_the_model() -> None:
    # a blank title is settled in code; a titled contact is never unknown, so the grammar cannot say it
    schema = contact_request_schema(["1"])["json_schema"]["schema"]
    properties = schema["$defs"]["ContactLabel"]["properties"]
    assert "unknown" not in properties["seniority"]["enum"] and "unknown" not in properties["department"]["enum"]
    assert "mid" in properties["seniority"]["enum"] and "support" in properties["department"]["enum"]


def test_the_embedded_model_sizes_the_pipeline_unless_told_otherwise() -> None:
    # one slot on a laptop's cores: one chunk in flight per branch, bounded calls, a step given time for several
    local = Settings(llm_provider="local")
    assert (local.max_parallel_chunks, local.labels_per_call, local.analysis_timeout_seconds) == (1, 16, 1800.0)
    hosted = Settings(llm_provider="openai", openai_api_key="sk-test")
    assert (hosted.max_parallel_chunks, hosted.labels_per_call, hosted.analysis_timeout_seconds) == (4, 100, 120.0)
    assert Settings(llm_provider="local", labels_per_call=40, max_parallel_chunks=2).labels_per_call == 40
    assert Settings(llm_provider="local", labels_per_call=40, max_parallel_chunks=2).max_parallel_chunks == 2


async def test_the_warm_up_runs_a_whole_call_without_reaching_the_provider(scripted_llm: ScriptedLlm) -> None:
    # a worker warms the agent framework and the provider client with one structured call answered in process: the
    # provider sees nothing, and a warm-up whose answer cannot be read fails loudly rather than warming nothing
    import asyncio

    from shared import llm

    settings = Settings(llm_provider="openai-compatible", llm_base_url=scripted_llm.base_url, llm_model="scripted")
    seen = len(scripted_llm.requests)
    await asyncio.to_thread(llm.warm_up, resolve_endpoint(settings), settings)  # a worker calls it before its loop
    assert len(scripted_llm.requests) == seen
    original = llm._WARM_UP_ANSWER
    llm._WARM_UP_ANSWER = {**original, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "not json"}}]}
    try:
        with pytest.raises(RuntimeError, match="did not read its answer"):
            await asyncio.to_thread(llm.warm_up, resolve_endpoint(settings), settings)
    finally:
        llm._WARM_UP_ANSWER = original
