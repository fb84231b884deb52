"""Agno's chat model for an OpenAI-compatible endpoint, its request sent on the worker's own HTTP client.

Agno runs the agent (the messages, the run, its metrics) and reads the answer as it reads OpenAI's
(``OpenAILike``); only the request travels differently: one JSON POST to ``{base_url}/chat/completions`` on the
endpoint's shared httpx client instead of a call through the openai SDK. The SDK's building of a request (every
typed parameter converted against its type hints, the options, the request object) and its reading of the answer
cost about 0.7 ms of CPU a call here, which against an endpoint that answers in milliseconds (a local model server,
a load test) was a tenth of a chunk step's CPU in the analyzer (docs/benchmarks.md). Hosted OpenAI keeps the SDK
(shared.llm): there a call takes hundreds of milliseconds and the SDK's own conventions (its environment variables,
organisation and project headers) are worth more than the CPU.

What reaches the endpoint is what the SDK sent: the same JSON body, the same bearer key and the same step headers
(tests/test_llm.py holds the body and the step headers to the SDK's; the SDK's own client headers, its user agent
and platform details, are not sent). The answer is read as the SDK reads it, leniently where it must be (openai's
``construct`` when it is not a whole chat completion: an endpoint that leaves out a field it does not use still
answers), and every failure is the ``ModelProviderError`` Agno raises for the SDK's errors, so a run ends the same
way and shared.llm maps it to the same Temporal error.
"""

from __future__ import annotations

from typing import Any

import httpx
from agno.exceptions import ModelProviderError
from agno.models.message import Message
from agno.models.openai.like import OpenAILike
from agno.models.response import ModelResponse
from openai.types.chat import ChatCompletion
from pydantic import ValidationError


def _said(response: httpx.Response) -> str:
    """What a failed request's body says (OpenAI's ``{"error": {"message": ...}}``, else its text), bounded."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return str(message or response.text or f"HTTP {response.status_code}")[:500]


def _completion(answer: Any) -> ChatCompletion:
    """The answer as a ``ChatCompletion``: validated when it is a whole one (about 8 us), built leniently as the SDK
    builds it (openai's ``construct``, about 100 us: it walks every field's type) when the endpoint left out a field
    it does not use."""
    try:
        return ChatCompletion.model_validate(answer)
    except ValidationError:
        return ChatCompletion.construct(**answer)


class DirectChat(OpenAILike):
    """``OpenAILike`` whose asynchronous call is a plain POST on ``http_client`` (an ``httpx.AsyncClient``)."""

    async def ainvoke(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
    ) -> ModelResponse:
        client = self.http_client
        if not isinstance(client, httpx.AsyncClient):
            raise TypeError("DirectChat needs an httpx.AsyncClient as its http_client")
        params = self.get_request_params(response_format=response_format, tools=tools, tool_choice=tool_choice,
                                         run_response=run_response)
        headers = {"Authorization": f"Bearer {self.api_key}", **(params.pop("extra_headers", None) or {})}
        query = params.pop("extra_query", None)
        extra = params.pop("extra_body", None) or {}
        body = {"messages": self._format_all_messages(messages, compress_tool_results), "model": self.id, **params,
                **extra}
        url = f"{str(self.base_url or '').rstrip('/')}/chat/completions"
        assistant_message.metrics.start_timer()  # type: ignore[no-untyped-call]  # Agno leaves it untyped
        try:
            response = await client.post(url, json=body, headers=headers, params=query)
        except httpx.HTTPError as error:  # no answer: refused, dropped, or a read that timed out
            raise ModelProviderError(message=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
                                     model_name=self.name, model_id=self.id) from error
        assistant_message.metrics.stop_timer()
        if response.status_code >= 400:
            raise ModelProviderError(message=_said(response), status_code=response.status_code, model_name=self.name,
                                     model_id=self.id)
        try:
            completion = _completion(response.json())
            return self._parse_provider_response(completion, response_format=response_format)
        except ModelProviderError:
            raise
        except Exception as error:  # an answer that is not a chat completion: the run reports it, as with the SDK
            raise ModelProviderError(message=f"the endpoint's answer is not a chat completion: {error}"[:500],
                                     status_code=response.status_code, model_name=self.name,
                                     model_id=self.id) from error
