"""A router variant in the real gateway: each request answered by the cheap or the strong
configuration as a trained router decides, before the call (prompt) or from the cheap
answer (cascade); all under the router variant's id, both calls its cost; a corrupt
router refused with the last good variant set kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from optimizer_operator.routers.model import Router
from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, variant, write_variants

EASY = [f"what is {a} plus {b}" for a in range(2, 30) for b in (3, 7)]
HARD = [f"a train leaves at {h} and another one later, how far apart are they after the "
        "percentage discount" for h in range(1, 57)]  # fmt: skip


HARD_ONE = "a train leaves at 9 and another one later, how far apart are they after the discount"


def _router(mode: str) -> Router:
    prompts = EASY + HARD
    good = [True] * len(EASY) + [False] * len(HARD)
    answers = ["it is 12"] * len(prompts)
    return Router.train(mode, prompts, good, answers if mode == "cascade" else None,  # type: ignore[arg-type]
                        cheap="sim-small", strong="sim-large", c=16.0)  # fmt: skip


def _routed(mode: str, artifact: str, threshold: str = "0.5") -> dict[str, Any]:
    v = variant("v1", 10000, role="stable", model="sim-small")
    v["router"] = {
        "mode": mode,
        "threshold": threshold,
        "strong": {"provider": "simulator", "model": "sim-large"},
        "artifact": artifact,
    }
    return v


def _ask(prompt: str, stream: bool = False) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "stream": stream}


async def test_a_prompt_router_sends_each_request_where_it_decides(
    start_gateway: GatewayFactory,
) -> None:
    gateway, url = await start_gateway([_routed("prompt", _router("prompt").dumps())])
    async with aiohttp.ClientSession() as s:
        easy = await post_chat(s, url, _ask("what is 11 plus 4"))
        hard = await post_chat(s, url, _ask(HARD_ONE))
        async with s.post(url + "/v1/chat/completions", json=_ask("what is 5 plus 8", True)) as r:
            streamed = await r.text()
    assert easy[0] == 200 and hard[0] == 200
    assert easy[1]["model"] == "sim-small" and hard[1]["model"] == "sim-large"
    assert easy[2]["X-LLMOpt-Variant"] == hard[2]["X-LLMOpt-Variant"] == "v1"
    assert "data: [DONE]" in streamed
    decisions = {t: metric_value(gateway, "llmopt_router_decisions_total", variant="v1", target=t)
                 for t in ("cheap", "strong")}  # fmt: skip
    assert decisions == {"cheap": 2, "strong": 1}
    assert metric_value(gateway, "llmopt_requests_total", variant="v1", status="200") == 3
    small = metric_value(gateway, "llmopt_cost_usd_total", variant="v1",
                         gen_ai_request_model="sim-small")  # fmt: skip
    large = metric_value(gateway, "llmopt_cost_usd_total", variant="v1",
                         gen_ai_request_model="sim-large")  # fmt: skip
    assert small > 0 and large > 0


async def test_a_cascade_keeps_a_good_cheap_answer_and_pays_both_calls_on_escalation(
    start_gateway: GatewayFactory,
) -> None:
    gateway, url = await start_gateway([_routed("cascade", _router("cascade").dumps())])
    async with aiohttp.ClientSession() as s:
        kept = await post_chat(s, url, _ask("what is 13 plus 3"))
        cost_after_kept = metric_value(gateway, "llmopt_cost_usd_total", variant="v1")
        up = await post_chat(s, url, _ask(HARD_ONE))
        async with s.post(url + "/v1/chat/completions",
                          json=_ask("what is 2 plus 9", True)) as r:  # fmt: skip
            assert r.headers["X-LLMOpt-Routed-To"] == "cheap"
            events = [line async for line in r.content if line.startswith(b"data: ")]
    assert kept[0] == 200 and kept[2]["X-LLMOpt-Routed-To"] == "cheap"
    assert kept[1]["model"] == "sim-small"
    assert up[0] == 200 and up[2]["X-LLMOpt-Routed-To"] == "strong"
    assert up[1]["model"] == "sim-large"
    # The escalated request paid for the cheap answer it did not use, and the strong one.
    small = metric_value(gateway, "llmopt_cost_usd_total", variant="v1",
                         gen_ai_request_model="sim-small")  # fmt: skip
    large = metric_value(gateway, "llmopt_cost_usd_total", variant="v1",
                         gen_ai_request_model="sim-large")  # fmt: skip
    assert large > 0 and small > cost_after_kept and small + large > cost_after_kept
    assert metric_value(gateway, "llmopt_requests_total", variant="v1", status="200") == 3
    chunks = [json.loads(e[6:]) for e in events if e.strip() != b"data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text and events[-1].strip() == b"data: [DONE]"


async def test_a_cascade_records_the_cheap_answer_it_turned_down_as_well(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """What router retraining learns from: a cascade's recording labels the cheap model
    on every request, the escalated ones included, beside the strong model's answer."""
    record = tmp_path / "rec.jsonl"
    gateway, url = await start_gateway(
        [_routed("cascade", _router("cascade").dumps())], record=record, record_redaction="none"
    )
    async with aiohttp.ClientSession() as s:
        kept = await post_chat(s, url, _ask("what is 13 plus 3"))
        up = await post_chat(s, url, _ask(HARD_ONE))
    assert kept[2]["X-LLMOpt-Routed-To"] == "cheap" and up[2]["X-LLMOpt-Routed-To"] == "strong"
    assert gateway.recorder is not None
    await gateway.recorder.stop()
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    by = [(r["prompt"], r["model"]) for r in rows]
    assert by == [("what is 13 plus 3", "sim-small"), (HARD_ONE, "sim-small"),
                  (HARD_ONE, "sim-large")]  # fmt: skip
    assert all(r["variant"] == "v1" and isinstance(r["correct"], bool) for r in rows)


async def test_a_corrupt_router_is_refused_and_the_last_good_set_kept(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    good = _router("prompt").dumps()
    gateway, url = await start_gateway([_routed("prompt", good)])
    config = gateway.s.config_file
    assert config is not None
    doc = json.loads(good)
    broken = [
        ("{not json", "not JSON"),
        (json.dumps({**doc, "digest": "0" * 64}), "digest"),
        (json.dumps({**doc, "version": 9}), "version 9"),
    ]
    for artifact, says in broken:
        write_variants(config, [_routed("prompt", artifact)])

        for _ in range(100):
            if gateway.config.last_error and says in gateway.config.last_error:
                break
            await asyncio.sleep(0.02)
        assert gateway.config.last_error and says in gateway.config.last_error, (
            says, gateway.config.last_error)  # fmt: skip
        async with aiohttp.ClientSession() as s:  # still served by the last good router
            status, _, headers = await post_chat(s, url, _ask("what is 1 plus 1"))
        assert status == 200 and headers["X-LLMOpt-Variant"] == "v1"
    write_variants(config, [_routed("cascade", good)])  # a prompt router named cascade
    for _ in range(100):
        if gateway.config.last_error and "cascade" in gateway.config.last_error:
            break
        await asyncio.sleep(0.02)
    assert "is a prompt router" in (gateway.config.last_error or "")
    assert metric_value(gateway, "llmopt_gateway_config_reloads_total", result="failed") == 4
