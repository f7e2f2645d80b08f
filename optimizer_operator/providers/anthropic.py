"""The ``anthropic`` provider: an adapter to the Anthropic Messages API."""

from __future__ import annotations

import json
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


# response_format json_schema is asked of Claude as one forced tool of this name, whose
# input is the answer; the adapter gives it back as the message's text.
JSON_TOOL = "json_answer"


def _text(content: Any) -> str:
    """An OpenAI message content (a string or a list of parts) as plain text."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _blocks(content: Any) -> list[dict[str, Any]]:
    """An OpenAI message content as Anthropic content blocks (text and images by URL or
    data URL)."""
    if not isinstance(content, list):
        text = _text(content)
        return [{"type": "text", "text": text}] if text else []
    out: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            out.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, _, data = url[5:].partition(";base64,")
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            out.append({"type": "image", "source": source})
    return out


def _arguments(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) and text else (text or {})
    except ValueError:
        return {"arguments": text}  # the model's own malformed JSON, kept, not lost


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as Anthropic turns: an assistant's tool calls become tool_use
    blocks, tool messages become the next user turn's tool_result blocks, and turns of
    the same role in a row are merged (the Messages API wants them alternating)."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id", ""),
                               "name": fn.get("name", ""),
                               "input": _arguments(fn.get("arguments"))})  # fmt: skip
        elif role == "tool":
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""),
                       "content": _text(m.get("content"))}]  # fmt: skip
        elif role == "user":
            blocks = _blocks(m.get("content"))
        else:
            continue  # system and developer messages go to the system prompt
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # one text block is sent as the plain string it was
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
    return turns


def _tools(passthrough: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """OpenAI tools and tool_choice as Anthropic's."""
    tools = [
        {"name": (t.get("function") or {}).get("name", ""),
         "description": (t.get("function") or {}).get("description", ""),
         "input_schema": (t.get("function") or {}).get("parameters")
         or {"type": "object", "properties": {}}}
        for t in passthrough.get("tools") or []
        if isinstance(t, dict) and t.get("type", "function") == "function"
    ]  # fmt: skip
    choice = passthrough.get("tool_choice")
    if choice == "required":
        return tools, {"type": "any"}
    if choice in ("auto", "none"):
        return tools, {"type": choice}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return tools, {"type": "tool", "name": choice["function"]["name"]}
    return tools, None


def to_messages_body(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """An OpenAI-style request as an Anthropic Messages API body: messages, tools and
    tool results, tool_choice and response_format translated."""
    system = [
        _text(m.get("content")) for m in request.messages
        if m.get("role") in ("system", "developer")
    ]  # fmt: skip
    p = request.parameters
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _turns(request.messages),
        "max_tokens": p.max_tokens or DEFAULT_MAX_TOKENS,
    }
    tools, choice = _tools(request.passthrough)
    fmt = request.passthrough.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        tools = [*tools, {"name": JSON_TOOL, "description": "Answer with this JSON.",
                          "input_schema": schema}]  # fmt: skip
        choice = {"type": "tool", "name": JSON_TOOL}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        system.append("Answer with one JSON object and nothing else.")
    if tools:
        body["tools"] = tools
    if choice is not None and tools:
        body["tool_choice"] = choice
    if system:
        body["system"] = "\n\n".join(s for s in system if s)
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


def from_content(blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]] | None]:
    """Anthropic content blocks as (text, OpenAI tool_calls); the forced JSON tool's
    input is the text."""
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls: list[dict[str, Any]] = []
    for b in blocks:
        if b.get("type") != "tool_use":
            continue
        if b.get("name") == JSON_TOOL:
            text += json.dumps(b.get("input") or {})
            continue
        calls.append({"id": b.get("id", ""), "type": "function",
                      "function": {"name": b.get("name", ""),
                                   "arguments": json.dumps(b.get("input") or {})}})  # fmt: skip
    return text, calls or None


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
            text, calls = from_content(body["content"])
            use = body.get("usage") or {}
            stop = body.get("stop_reason") or ""
            if calls is None and stop == "tool_use":
                stop = "end_turn"  # only the JSON tool: an answer, not a call
            return ChatResult(
                text=text,
                tool_calls=calls,
                finish_reason=_STOP.get(stop, "stop"),
                input_tokens=int(use.get("input_tokens", 0)),
                output_tokens=int(use.get("output_tokens", 0)),
                model=body.get("model") or request.model,
                time_to_first_token=time.perf_counter() - started,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ProviderError(502, "upstream_malformed", f"anthropic: {exc!r}") from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        state = _Stream(request.model, time.perf_counter())
        with stream_errors(self.name):
            async with self._http.session().post(
                self._url(request),
                json=to_messages_body(request, True),
                headers=self._headers(request),
            ) as resp:
                if resp.status != 200:
                    raise await upstream_error(resp, self.name)
                async for event in sse_events(resp):
                    for chunk in state.on(event):
                        yield chunk
                    if state.done:
                        break
        yield ChatChunk(delta="", result=state.result())

    async def close(self) -> None:
        await self._http.close()


class _Stream:
    """An Anthropic event stream read into OpenAI-style chunks: text deltas, and tool
    calls as OpenAI streams them (a first delta with id and name, then argument pieces)."""

    def __init__(self, model: str, started: float) -> None:
        self.model, self.started = model, started
        self.parts: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.slots: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
        self.input_tokens = self.output_tokens = 0
        self.finish, self.done = "stop", False
        self.ttft: float | None = None

    def _first(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started

    def on(self, event: dict[str, Any]) -> list[ChatChunk]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.model = msg.get("model") or self.model
            self.input_tokens = int((msg.get("usage") or {}).get("input_tokens", 0))
        elif kind == "content_block_start":
            return self._block(event)
        elif kind == "content_block_delta":
            return self._delta(event)
        elif kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason")
            if stop == "tool_use" and not self.calls:
                stop = "end_turn"  # only the JSON tool: an answer
            self.finish = _STOP.get(stop or "", self.finish)
            self.output_tokens = int((event.get("usage") or {}).get("output_tokens", 0))
        elif kind == "error":
            err = event.get("error") or {}
            raise ProviderError(
                502, "upstream_error", f"anthropic stream error: {err.get('message', '')}"
            )
        elif kind == "message_stop":
            self.done = True
        return []

    def _block(self, event: dict[str, Any]) -> list[ChatChunk]:
        block = event.get("content_block") or {}
        if block.get("type") != "tool_use" or block.get("name") == JSON_TOOL:
            return []
        self.slots[int(event.get("index", 0))] = len(self.calls)
        function = {"name": block.get("name", ""), "arguments": ""}
        self.calls.append({"id": block.get("id", ""), "type": "function", "function": function})
        self._first()
        return [ChatChunk(delta="", tool_calls=[{"index": len(self.calls) - 1, **self.calls[-1]}])]

    def _delta(self, event: dict[str, Any]) -> list[ChatChunk]:
        delta = event.get("delta") or {}
        piece = delta.get("partial_json") or ""
        slot = self.slots.get(int(event.get("index", 0)))
        if piece and slot is not None:
            self.calls[slot]["function"]["arguments"] += piece
            call = {"index": slot, "function": {"arguments": piece}}
            return [ChatChunk(delta="", tool_calls=[call])]
        text = delta.get("text") or piece  # the forced JSON tool's input is the text
        if not text:
            return []
        self._first()
        self.parts.append(text)
        return [ChatChunk(delta=text)]

    def result(self) -> ChatResult:
        return ChatResult(
            text="".join(self.parts),
            finish_reason=self.finish,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            model=self.model,
            time_to_first_token=self.ttft,
            tool_calls=self.calls or None,
        )
