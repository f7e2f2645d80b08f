"""Tool calls and structured output through the gateway: passed through for OpenAI-
compatible upstreams, translated for Anthropic's Messages API (tools, tool_choice, tool
results, response_format), plain and streamed.

No OpenAI or Anthropic API can be reached from these machines: each upstream is a
stand-in that speaks the real wire format and records what the gateway sent.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from tests.gateway.conftest import GatewayFactory, post_chat, serve, variant

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}  # fmt: skip
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
CONVERSATION = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        CALL, {**CALL, "id": "call_2", "function": {"name": "get_weather",
                                                    "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
]  # fmt: skip


def _sse(events: list[dict[str, Any]], named: bool) -> bytes:
    return b"".join(
        ((f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n").encode()
        for e in events
    )


def _anthropic(seen: list[dict[str, Any]]) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        forced = (body.get("tool_choice") or {}).get("name")
        block: dict[str, Any] = (
            {"type": "tool_use", "id": "toolu_9", "name": forced, "input": {"answer": 42}}
            if forced == "json_answer"
            else {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                  "input": {"city": "Oslo"}}
        )  # fmt: skip
        if not body.get("stream"):
            return web.json_response({
                "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "Let me check."}, block],
                "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 9},
            })  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = [
            {"type": "message_start", "message": {"model": body["model"],
                                                  "usage": {"input_tokens": 30}}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "Checking."}},
            {"type": "content_block_start", "index": 1,
             "content_block": {**block, "input": {}}},
            {"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
            {"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'}},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
             "usage": {"output_tokens": 12}},
            {"type": "message_stop"},
        ]  # fmt: skip
        await resp.write(_sse(events, named=True))
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


def _openai(seen: list[dict[str, Any]]) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if not body.get("stream"):
            return web.json_response({
                "id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": None,
                                         "tool_calls": [CALL]}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 7},
            })  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pieces = [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}},
            {"index": 0, "function": {"arguments": '{"city": '}},
            {"index": 0, "function": {"arguments": '"Paris"}'}},
        ]  # fmt: skip
        events = [
            {"model": body["model"], "choices": [{"index": 0, "delta": {"tool_calls": [p]}}]}
            for p in pieces
        ] + [{"model": body["model"], "choices": [{"index": 0, "delta": {},
                                                   "finish_reason": "tool_calls"}]},
             {"model": body["model"], "choices": [],
              "usage": {"prompt_tokens": 20, "completion_tokens": 7}}]  # fmt: skip
        await resp.write(_sse(events, named=False) + b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _stream(s: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[Any]:
    async with s.post(url + "/v1/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status == 200
        lines = [line[6:].strip() async for line in resp.content if line.startswith(b"data: ")]
    assert lines[-1] == b"[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _calls_of(chunks: list[Any]) -> list[dict[str, Any]]:
    """Whole tool calls from streamed deltas, as an OpenAI SDK assembles them."""
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for choice in c["choices"]:
            for d in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(d["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] = d.get("id") or call["id"]
                call["name"] += (d.get("function") or {}).get("name") or ""
                call["arguments"] += (d.get("function") or {}).get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


async def test_openai_tool_calls_pass_through_plain_and_streamed(
    start_gateway: GatewayFactory,
) -> None:
    seen: list[dict[str, Any]] = []
    runner, base = await serve(_openai(seen))
    _, url = await start_gateway(
        [variant("v1", 10000, role="stable", provider="openai", model="gpt-4o-mini",
                 base_url=base + "/v1")]
    )  # fmt: skip
    request = {"messages": CONVERSATION, "tools": [WEATHER], "tool_choice": "auto"}
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url, request)
        chunks = await _stream(s, url, request)
    await runner.cleanup()
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert message["tool_calls"] == [CALL] and message["content"] is None
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert seen[0]["tools"] == [WEATHER] and seen[0]["messages"] == CONVERSATION
    assert _calls_of(chunks) == [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]


async def test_anthropic_tools_and_tool_results_are_translated(
    start_gateway: GatewayFactory, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    seen: list[dict[str, Any]] = []
    runner, base = await serve(_anthropic(seen))
    _, url = await start_gateway(
        [variant("v1", 10000, role="stable", provider="anthropic", model="claude-sonnet-4-5",
                 base_url=base)]
    )  # fmt: skip
    request = {"messages": CONVERSATION, "tools": [WEATHER], "tool_choice": "required"}
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url, request)
        chunks = await _stream(s, url, request)
    await runner.cleanup()
    sent = seen[0]
    assert sent["system"] == "Use tools."
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather in a city.",
                              "input_schema": WEATHER["function"]["parameters"]}]  # fmt: skip
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}}]},
        # Both results in one user turn: the Messages API wants turns alternating.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"}]},
    ]  # fmt: skip
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_1" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert _calls_of(chunks) == [
        {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Checking."


async def test_anthropic_structured_output_by_a_forced_tool(
    start_gateway: GatewayFactory, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    seen: list[dict[str, Any]] = []
    runner, base = await serve(_anthropic(seen))
    _, url = await start_gateway(
        [variant("v1", 10000, role="stable", provider="anthropic", model="claude-sonnet-4-5",
                 base_url=base)]
    )  # fmt: skip
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    asked = {"messages": [{"role": "user", "content": "6 x 7?"}],
             "response_format": {"type": "json_schema",
                                 "json_schema": {"name": "result", "schema": schema}}}  # fmt: skip
    plain_json = {"messages": [{"role": "user", "content": "6 x 7?"}],
                  "response_format": {"type": "json_object"}}  # fmt: skip
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url, asked)
        await post_chat(s, url, plain_json)
    await runner.cleanup()
    assert seen[0]["tools"][-1] == {"name": "json_answer", "description": "Answer with this JSON.",
                                    "input_schema": schema}  # fmt: skip
    assert seen[0]["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert status == 200, body
    choice = body["choices"][0]
    # The schema's answer is the message's text, not a tool call.
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"
    assert json.loads(choice["message"]["content"].removeprefix("Let me check.")) == {"answer": 42}
    assert "JSON object" in seen[1]["system"] and "tools" not in seen[1]
