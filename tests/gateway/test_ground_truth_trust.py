"""Ground truth is trusted only from the project's own simulator server: the ``openai``
provider reads the ``llmopt`` field only from an endpoint marked ``groundTruth: true``,
and the simulator can answer as a plain OpenAI-compatible server (``--plain``) that
sends none — as a real provider does. The servers here are the real simulator app."""

from __future__ import annotations

import aiohttp
import pytest

from optimizer_operator.api.llmconfig import Endpoint, Parameters
from optimizer_operator.providers.base import ChatRequest, ChatResult
from optimizer_operator.providers.openai import OpenAIProvider
from optimizer_operator.providers.serve import build_app
from optimizer_operator.providers.simulator import SimulatorProvider, load_fleet
from tests.gateway.conftest import serve


async def _ask(base: str, ground_truth: bool | None, stream: bool) -> ChatResult:
    provider = OpenAIProvider()
    request = ChatRequest(
        model="sim-small",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        parameters=Parameters(),
        request_id="r1",
        endpoint=Endpoint(base_url=base + "/v1", ground_truth=ground_truth),
    )
    try:
        if not stream:
            return await provider.complete(request)
        last = None
        async for chunk in provider.stream(request):
            last = chunk.result or last
        assert last is not None
        return last
    finally:
        await provider.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_only_a_marked_endpoint_of_ours_gives_ground_truth(stream: bool) -> None:
    ours = build_app(SimulatorProvider(load_fleet(None), time_scale=0))
    plain = build_app(SimulatorProvider(load_fleet(None), time_scale=0), plain=True)
    runner, base = await serve(ours)
    plain_runner, plain_base = await serve(plain)
    try:
        unmarked = await _ask(base, None, stream)
        marked = await _ask(base, True, stream)
        plain_marked = await _ask(plain_base, True, stream)
    finally:
        await runner.cleanup()
        await plain_runner.cleanup()
    assert unmarked.text and unmarked.ground_truth is None  # any endpoint could claim it
    assert marked.ground_truth is not None and 0.0 <= marked.ground_truth <= 1.0
    assert plain_marked.text and plain_marked.ground_truth is None


async def test_the_plain_simulator_sends_no_llmopt_field() -> None:
    simulator = SimulatorProvider(load_fleet(None), time_scale=0)
    app = build_app(simulator, plain=True)
    runner, base = await serve(app)
    ask = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    # The simulator answers 1% of sim-small's requests with a simulated 503, drawn from
    # the request id: a fixed id whose draw is an answer (without one, a random id failed
    # this test one run in a hundred).
    draw = simulator.draw(ChatRequest(model="sim-small", messages=ask["messages"],
                                      parameters=Parameters(), request_id="plain-1"))  # fmt: skip
    assert not draw.fails and not draw.hangs
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.post(base + "/v1/chat/completions", json=ask,
                   headers={"X-Request-Id": "plain-1"}) as resp,  # fmt: skip
        ):
            body = await resp.json()
    finally:
        await runner.cleanup()
    assert resp.status == 200 and body["choices"][0]["message"]["content"]
    assert "llmopt" not in body
