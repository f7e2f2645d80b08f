"""The ``openai`` provider: any OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .base import ChatChunk, ChatRequest, ChatResult, ProviderError
from .http import (
    SessionHolder,
    api_key,
    base_url,
    connection_error,
    sse_events,
    stream_errors,
    upstream_error,
)
from .openai_wire import EXTENSION, merge_tool_deltas, parameters_to_openai, parse_completion


def trusted(request: ChatRequest) -> bool:
    """Ground truth is read only from an endpoint marked as the project's simulator
    server (``endpoint.groundTruth: true``); any other endpoint could claim anything."""
    return bool(request.endpoint and request.endpoint.ground_truth)


class OpenAIProvider:
    name = "openai"
    default_base_url: str | None = None  # the variant's endpoint.baseUrl is required
    key_env = "OPENAI_API_KEY"

    def __init__(self) -> None:
        self._http = SessionHolder()

    def _request(
        self, request: ChatRequest, stream: bool
    ) -> tuple[str, dict[str, Any], dict[str, str]]:
        url = base_url(request.endpoint, self.default_base_url, self.name) + "/chat/completions"
        body: dict[str, Any] = {
            **request.passthrough,
            "model": request.model,
            "messages": request.messages,
            **parameters_to_openai(request.parameters),
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {
            **request.headers,
            "Content-Type": "application/json",
            "X-Request-Id": request.request_id,
            "X-LLMOpt-Attempt": str(request.attempt),
        }
        key = api_key(request.endpoint, self.key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return url, body, headers

    async def complete(self, request: ChatRequest) -> ChatResult:
        url, body, headers = self._request(request, stream=False)
        started = time.perf_counter()
        try:
            async with self._http.session().post(url, json=body, headers=headers) as resp:
                if resp.status != 200:
                    raise await upstream_error(resp, self.name)
                payload = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise connection_error(exc, self.name) from None
        try:
            result = parse_completion(payload, request.model)
        except ValueError as exc:
            raise ProviderError(502, "upstream_malformed", f"openai: {exc}") from None
        if not trusted(request):
            result.ground_truth = None
        result.time_to_first_token = time.perf_counter() - started
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        url, body, headers = self._request(request, stream=True)
        started = time.perf_counter()
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish, truth, model = "stop", None, request.model
        ttft: float | None = None
        calls: dict[int, dict[str, Any]] = {}
        with stream_errors(self.name):
            async with self._http.session().post(url, json=body, headers=headers) as resp:
                if resp.status != 200:
                    raise await upstream_error(resp, self.name)
                async for event in sse_events(resp):
                    model = event.get("model") or model
                    usage = event.get("usage") or usage
                    truth = (event.get(EXTENSION) or {}).get("ground_truth", truth)
                    for choice in event.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        tool_deltas = (choice.get("delta") or {}).get("tool_calls")
                        finish = choice.get("finish_reason") or finish
                        if delta or tool_deltas:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            parts.append(delta or "")
                            if tool_deltas:
                                merge_tool_deltas(calls, tool_deltas)
                            yield ChatChunk(delta=delta or "", tool_calls=tool_deltas or None)
        yield ChatChunk(
            delta="",
            result=ChatResult(
                text="".join(parts),
                finish_reason=finish,
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                model=model,
                ground_truth=None if truth is None or not trusted(request) else float(truth),
                time_to_first_token=ttft,
                tool_calls=[calls[i] for i in sorted(calls)] or None,
            ),
        )

    async def close(self) -> None:
        await self._http.close()


class GoogleProvider(OpenAIProvider):
    """The ``google`` provider: Gemini through Google's OpenAI-compatible endpoint (chat
    completions, streaming, tools), keyed by $GEMINI_API_KEY or the variant's Secret. A
    Vertex AI endpoint is an ``endpoint.baseUrl`` away."""

    name = "google"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta/openai"
    key_env = "GEMINI_API_KEY"
