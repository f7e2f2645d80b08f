"""Anthropic adapter, LLM-as-judge, tracing and recording: each against a stand-in upstream.

No Anthropic API, judge model or OpenTelemetry collector can run on these
machines, so each test serves a small stand-in that speaks the real wire format
(Messages API SSE events, OpenAI chat completions, OTLP/HTTP protobuf) and
checks what the gateway sends and how it reads the answer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from optimizer_operator.api.llmconfig import Parameters
from optimizer_operator.providers import ChatRequest
from optimizer_operator.providers.replay import ReplayDataset, ReplayProvider
from tests.gateway.conftest import (
    GatewayFactory,
    metric_value,
    otlp_receiver,
    post_chat,
    serve,
    variant,
)


def _anthropic_standin(seen: list[dict[str, Any]]) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append({"body": body, "headers": dict(request.headers)})
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": "Hello from Claude."}],
                    "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 11, "output_tokens": 5},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "model": body["model"],
                        "usage": {"input_tokens": 11, "output_tokens": 0},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hello "},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "stream."},
                },
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 3},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


async def test_anthropic_adapter_plain_and_streaming(
    start_gateway: GatewayFactory, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    seen: list[dict[str, Any]] = []
    runner, base = await serve(_anthropic_standin(seen))
    gateway, url = await start_gateway(
        [
            variant(
                "v1",
                10000,
                role="stable",
                provider="anthropic",
                model="claude-3-5-haiku-latest",
                base_url=base,
                parameters={"temperature": "1.5", "maxTokens": 5},
            )
        ]
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url, {"messages": messages})
        async with s.post(
            url + "/v1/chat/completions", json={"messages": messages, "stream": True}
        ) as resp:
            events = [line[6:].strip() async for line in resp.content if line.startswith(b"data: ")]
    await runner.cleanup()
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hello from Claude."
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    sent = seen[0]
    assert sent["body"]["system"] == "Be brief."
    assert sent["body"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent["body"]["max_tokens"] == 5 and sent["body"]["temperature"] == 1.0  # clamped
    assert sent["headers"]["x-api-key"] == "sk-ant-test"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    chunks = [json.loads(e) for e in events if e != b"[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello stream." and events[-1] == b"[DONE]"
    assert (
        metric_value(
            gateway, "gen_ai_client_token_usage_sum", variant="v1", gen_ai_token_type="output"
        )
        == 8
    )
    assert metric_value(gateway, "llmopt_cost_usd_total", variant="v1") > 0


def _judge_standin(calls: list[str]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body["messages"][0]["content"])
        return web.json_response(
            {
                "id": "j",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": '{"score": 4, "reason": "mostly right"}',
                        },
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_llm_judge_scores_through_a_provider_and_caches(
    start_gateway: GatewayFactory,
) -> None:
    calls: list[str] = []
    runner, base = await serve(_judge_standin(calls))
    judge = json.dumps(
        [
            {
                "name": "llm_judge",
                "rate": 1,
                "options": {
                    "provider": "openai",
                    "model": "judge-model",
                    "endpoint": {"baseUrl": base + "/v1"},
                },
            }
        ]
    )
    gateway, url = await start_gateway([variant("v1", 10000, role="stable")], evaluators=judge)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):  # same request id: same answer, so the judge is asked once
            assert (await post_chat(s, url, headers={"X-Request-Id": "same"}))[0] == 200
    await gateway.evaluations.drain()
    await runner.cleanup()
    assert len(calls) == 1 and "Score it from 1" in calls[0] and "What is 2+2?" in calls[0]
    assert metric_value(gateway, "llmopt_quality_score_count", evaluator="llm_judge") == 3
    assert metric_value(gateway, "llmopt_quality_score_sum", evaluator="llm_judge") == 3 * 0.75


async def test_trace_context_continues_and_spans_carry_genai_attributes(
    start_gateway: GatewayFactory,
) -> None:
    spans: list[Any] = []
    upstream_traceparents: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        upstream_traceparents.append(request.headers.get("traceparent", ""))
        body = await request.json()
        return web.json_response(
            {
                "id": "u",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "ok"},
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        )

    app = otlp_receiver(spans)
    app.router.add_post("/v1/chat/completions", upstream)
    runner, base = await serve(app)
    gateway, url = await start_gateway(
        [
            variant(
                "v1",
                10000,
                role="stable",
                provider="openai",
                model="gpt-4o-mini",
                base_url=base + "/v1",
                parameters={"temperature": "0.2", "maxTokens": 64},
            )
        ],
        otlp_endpoint=base,
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with aiohttp.ClientSession() as s:
        status, _, _ = await post_chat(
            s, url, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        )
    assert status == 200
    assert gateway.tracer is not None
    gateway.tracer.provider.force_flush()
    for _ in range(50):
        if spans:
            break
        await asyncio.sleep(0.1)
    await runner.cleanup()
    [span] = spans
    assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == "00f067aa0ba902b7"
    attrs = {a.key: a.value for a in span.attributes}
    assert attrs["gen_ai.operation.name"].string_value == "chat"
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o-mini"
    assert attrs["gen_ai.request.temperature"].double_value == 0.2
    assert attrs["gen_ai.usage.output_tokens"].int_value == 1
    assert attrs["llmopt.variant"].string_value == "v1"
    # The upstream call continues the same trace, as a child of the gateway's span.
    assert upstream_traceparents[0].split("-")[1] == trace_id
    assert upstream_traceparents[0].split("-")[2] == span.span_id.hex()


async def test_recorded_traffic_replays_as_an_evaluation_set(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    record = tmp_path / "traffic.jsonl"
    gateway, url = await start_gateway(
        [variant("v1", 10000, role="stable", model="sim-small")],
        record=record,
        record_redaction="none",
    )
    prompts = ["What is 6 times 7?", "Name a prime number above 10."]
    answers = {}
    async with aiohttp.ClientSession() as s:
        for i, prompt in enumerate(prompts):
            _, body, _ = await post_chat(
                s,
                url,
                {"messages": [{"role": "user", "content": prompt}]},
                headers={"X-Request-Id": f"rec-{i}"},
            )
            answers[prompt] = body["choices"][0]["message"]["content"]
    assert gateway.recorder is not None
    gateway.recorder._file.flush()
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    assert {x["prompt"] for x in lines} == set(prompts) and lines[0]["variant"] == "v1"
    replay = ReplayProvider(ReplayDataset.load(record), time_scale=0)
    for prompt, text in answers.items():
        result = await replay.complete(
            ChatRequest(
                model="sim-small",
                messages=[{"role": "user", "content": prompt}],
                parameters=Parameters(),
                request_id="x",
            )
        )
        assert result.text == text and result.ground_truth in (0.0, 1.0)


async def test_recording_redacts_by_default(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    record = tmp_path / "traffic.jsonl"
    gateway, url = await start_gateway([variant("v1", 10000, role="stable")], record=record)
    async with aiohttp.ClientSession() as s:
        await post_chat(
            s, url, {"messages": [{"role": "user", "content": "mail me at ann@example.org"}]}
        )
    assert gateway.recorder is not None
    gateway.recorder._file.flush()
    assert json.loads(record.read_text())["prompt"] == "mail me at <email>"
