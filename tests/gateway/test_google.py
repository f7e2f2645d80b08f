"""Gemini through the ``google`` provider: the real gateway against a stand-in of
Google's OpenAI-compatible endpoint (no Google API can be reached from these machines),
checking the path, the key and the answer, and that the shipped example validates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from optimizer_operator.api.llmconfig import LLMConfigSpec
from optimizer_operator.api.validation import InvalidSpec, parse_spec
from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, serve, variant

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gemini" / "llmconfig.yaml"


def _gemini(seen: list[dict[str, Any]]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "auth": request.headers.get("Authorization"),
                     "body": await request.json()})  # fmt: skip
        return web.json_response({
            "id": "g1", "object": "chat.completion", "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Bonjour."}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1beta/openai/chat/completions", chat)
    return app


async def test_gemini_through_its_openai_compatible_endpoint(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-key")
    seen: list[dict[str, Any]] = []
    runner, base = await serve(_gemini(seen))
    gateway, url = await start_gateway(
        [variant("v1", 10000, role="stable", provider="google", model="gemini-2.5-flash",
                 base_url=base + "/v1beta/openai", parameters={"temperature": "0.4"})]
    )  # fmt: skip
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url)
    await runner.cleanup()
    assert status == 200 and body["choices"][0]["message"]["content"] == "Bonjour."
    assert seen[0]["path"] == "/v1beta/openai/chat/completions"
    assert seen[0]["auth"] == "Bearer gm-test-key"
    assert seen[0]["body"]["model"] == "gemini-2.5-flash"
    assert seen[0]["body"]["temperature"] == 0.4
    # Priced by the catalog: 1000 in and 100 out at $0.30 / $2.50 per million.
    cost = metric_value(gateway, "llmopt_cost_usd_total", variant="v1")
    assert cost == pytest.approx(1000 * 0.30e-6 + 100 * 2.50e-6)
    labels = {
        s.labels.get("gen_ai_provider_name")
        for f in gateway.metrics.registry.collect()
        for s in f.samples
        if s.name == "gen_ai_client_operation_duration_seconds_count"
    }
    assert labels == {"google"}


def test_the_gemini_example_validates_and_an_endpoint_is_required() -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    spec = parse_spec(LLMConfigSpec, docs[0]["spec"])
    assert spec.provider == "google" and spec.endpoint is not None
    with pytest.raises(InvalidSpec, match="required for provider google"):
        parse_spec(LLMConfigSpec, {"provider": "google", "model": "gemini-2.5-flash"})
    assert json.dumps(docs[1]["spec"]["searchSpace"]["models"]).count("google") == 2
