"""The ``anthropic`` provider: an adapter to the Anthropic Messages API."""

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

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def to_messages_body(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """An OpenAI-style request as an Anthropic Messages API body."""
    system = [str(m.get("content", "")) for m in request.messages if m.get("role") == "system"]
    messages = [
        {"role": m["role"], "content": m.get("content", "")}
        for m in request.messages
        if m.get("role") in ("user", "assistant")
    ]
    p = request.parameters
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": p.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if p.temperature is not None:
        body["temperature"] = min(1.0, float(p.temperature))  # Anthropic's range is 0..1
    if p.top_p is not None:
        body["top_p"] = float(p.top_p)
    if p.top_k is not None:
        body["top_k"] = p.top_k
    if p.stop:
        body["stop_sequences"] = list(p.stop)
    if stream:
        body["stream"] = True
    return body


class AnthropicProvider:
    name = "anthropic"

    def __init__(self) -> None:
        self._http = SessionHolder()

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        headers = {
            **request.headers,
            "Content-Type": "application/json",
            "anthropic-version": API_VERSION,
        }
        key = api_key(request.endpoint, "ANTHROPIC_API_KEY")
        if key:
            headers["x-api-key"] = key
        return headers

    def _url(self, request: ChatRequest) -> str:
        return base_url(request.endpoint, None, self.name) + "/v1/messages"

    async def complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        try:
            async with self._http.session().post(
                self._url(request),
                json=to_messages_body(request, False),
                headers=self._headers(request),
            ) as resp:
                if resp.status != 200:
                    raise await upstream_error(resp, self.name)
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise connection_error(exc, self.name) from None
        try:
            text = "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
            use = body.get("usage") or {}
            return ChatResult(
                text=text,
                finish_reason=_STOP.get(body.get("stop_reason") or "", "stop"),
                input_tokens=int(use.get("input_tokens", 0)),
                output_tokens=int(use.get("output_tokens", 0)),
                model=body.get("model") or request.model,
                time_to_first_token=time.perf_counter() - started,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ProviderError(502, "upstream_malformed", f"anthropic: {exc!r}") from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        started = time.perf_counter()
        parts: list[str] = []
        input_tokens = output_tokens = 0
        finish, model, ttft = "stop", request.model, None
        with stream_errors(self.name):
            async with self._http.session().post(
                self._url(request),
                json=to_messages_body(request, True),
                headers=self._headers(request),
            ) as resp:
                if resp.status != 200:
                    raise await upstream_error(resp, self.name)
                async for event in sse_events(resp):
                    kind = event.get("type")
                    if kind == "message_start":
                        msg = event.get("message") or {}
                        model = msg.get("model") or model
                        input_tokens = int((msg.get("usage") or {}).get("input_tokens", 0))
                    elif kind == "content_block_delta":
                        text = (event.get("delta") or {}).get("text")
                        if text:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            parts.append(text)
                            yield ChatChunk(delta=text)
                    elif kind == "message_delta":
                        stop = (event.get("delta") or {}).get("stop_reason")
                        finish = _STOP.get(stop or "", finish)
                        output_tokens = int((event.get("usage") or {}).get("output_tokens", 0))
                    elif kind == "error":
                        err = event.get("error") or {}
                        raise ProviderError(
                            502,
                            "upstream_error",
                            f"anthropic stream error: {err.get('message', '')}",
                        )
                    elif kind == "message_stop":
                        break
        yield ChatChunk(
            delta="",
            result=ChatResult(
                text="".join(parts),
                finish_reason=finish,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                model=model,
                time_to_first_token=ttft,
            ),
        )

    async def close(self) -> None:
        await self._http.close()
