"""Pairwise judging against stable. The judge is the project's simulator in its judge
mode (model ``sim-judge``): an OpenAI-compatible model whose verdicts follow the hidden
quality of the answers it served, with noise and a configurable position bias — the
tests say so where they use it; no real judge model can run here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from optimizer_operator.api.llmconfig import Parameters
from optimizer_operator.api.variants import Variant
from optimizer_operator.gateway.metrics import GatewayMetrics
from optimizer_operator.gateway.pairwise import (
    Garbage,
    PairwiseJudge,
    PairwiseSettings,
    Scale,
    first_score,
    outcome_of,
    pair_score,
    verdict_of,
)
from optimizer_operator.local.cluster import free_port
from optimizer_operator.providers import ChatRequest
from optimizer_operator.providers.catalog import price_catalog
from optimizer_operator.providers.simulator import JudgeSettings, SimulatorProvider
from tests.gateway.conftest import (
    GatewayFactory,
    metric_value,
    post_chat,
    variant,
    write_variants,
)
from tests.gateway.test_gateway_http import _never_failing
from tests.gateway.test_observability import Process

PAIRS = 2000


def _reliable() -> SimulatorProvider:
    """The default fleet without simulated upstream errors or hangs: every pair gets
    both answers (the failure paths have tests of their own)."""
    return SimulatorProvider(_never_failing(), time_scale=0)


def _variant(vid: str, role: str, temperature: str) -> Variant:
    return Variant.model_validate(
        {"id": vid, "role": role, "hash": f"h-{vid}", "weight": 5000, "provider": "simulator",
         "model": "sim-medium", "parameters": {"temperature": temperature}}
    )  # fmt: skip


def test_a_verdict_is_read_only_from_a_verdict_and_both_orders_decide() -> None:
    assert verdict_of('{"winner": "A"}') == "A"
    assert verdict_of('Sure. {"winner":"tie"}') == "tie"
    assert first_score('{"winner": "B"}', "winner") == 0.0
    assert first_score('{"verdict": "A>>B"}', "graded") == 1.0
    assert first_score('Here: {"verdict":" b > a "}', "graded") == 0.25
    assert first_score('{"verdict": "A=B"}', "graded") == 0.5
    assert first_score('{"A": 5, "B": 1}', "scores") == 1.0
    assert first_score('{"A": 2, "B": 4}', "scores") == 0.25
    assert first_score('{"B": "3", "A": "3"}', "scores") == 0.5
    for garbage in ('{"A": 4}', '{"A": 10, "B": 3}', '{"A": 4.5, "B": 3}', '{"A": 0, "B": 3}'):
        with pytest.raises(Garbage):
            first_score(garbage, "scores")
    for garbage in ("A is better", '{"score": 4}', "", '{"verdict": "A>>>B"}'):
        with pytest.raises(Garbage):
            first_score(garbage, "graded")
    for garbage in ("A is better", '{"score": 4}', "", '{"verdict": "A>B"}'):
        with pytest.raises(Garbage):
            first_score(garbage, "winner")
    # as_first: A's score with the candidate as A; as_second: with stable as A.
    assert pair_score(1.0, 0.0) == 1.0 and pair_score(1.0, 0.5) == 0.75
    assert pair_score(0.0, 1.0) == 0.0 and pair_score(0.5, 1.0) == 0.25
    assert pair_score(1.0, 1.0) == 0.5  # the orders disagree: position, not quality
    assert pair_score(0.75, None) == 0.75 and pair_score(None, 0.75) == 0.25
    assert [outcome_of(x) for x in (0.625, 0.5, 0.375)] == ["win", "tie", "loss"]
    with pytest.raises(ValueError, match="scale must be graded, winner or scores"):
        PairwiseSettings.from_options(0.1, {"model": "j", "scale": "likert"})


async def _rates(
    sim: SimulatorProvider, bias: float, orders: int = 2, scale: Scale = "graded"
) -> tuple[float, float]:
    """The candidate's win rate (mean pair score) over PAIRS pairs judged in ``orders``
    orders (one: drawn at random, the same draws every call), and what the first order
    alone says."""
    sim.judge_settings = JudgeSettings(bias=bias, noise=0.1)
    metrics = GatewayMetrics()
    judge = PairwiseJudge(
        PairwiseSettings(provider="simulator", model="sim-judge", rate=1.0,
                         max_usd_per_hour=1e9, max_pending=PAIRS, orders=orders, scale=scale),
        metrics, price_catalog(None), lambda _: sim, seed=5,
    )  # fmt: skip
    candidate, stable = _variant("c1", "candidate", "0.5"), _variant("v1", "stable", "0.3")
    both, first_only = [], []
    for i in range(PAIRS):
        creq = ChatRequest(
            model="sim-medium",
            messages=[{"role": "user", "content": f"question {i}"}],
            parameters=Parameters(temperature="0.5"),
            request_id=f"q{i}",
        )
        answer = await sim.complete(creq)
        shadow = ChatRequest(
            model="sim-medium", messages=creq.messages, parameters=Parameters(temperature="0.3"),
            request_id=f"q{i}-pairwise",
        )  # fmt: skip
        score = await judge.judge_pair(creq, shadow, candidate, answer, stable, "bot")
        assert score is not None
        both.append(score)
        theirs = await sim.complete(shadow)
        first = await judge._ask(f"q{i}-ab", f"question {i}", answer.text, theirs.text, "bot")
        first_only.append(first)
    # What the gateway exported is what it returned.
    def exported(name: str) -> float:
        return sum(x.value for family in metrics.registry.collect() for x in family.samples
                   if x.name == name)  # fmt: skip

    assert exported("llmopt_pairwise_score_sum") == pytest.approx(sum(both))
    # The judge's preference for the first position, as a user sees it: the mean score of
    # the first answer over every judge call; 1/2 without a bias.
    position = exported("llmopt_pairwise_first_answer_score_sum") / exported(
        "llmopt_pairwise_first_answer_score_count"
    )
    assert (position > 0.51) == (bias > 0), (position, bias)
    assert abs(position - 0.5) < 0.01 or bias > 0, position
    return sum(both) / PAIRS, sum(first_only) / PAIRS


@pytest.mark.parametrize("scale", ["graded", "winner", "scores"])
async def test_judging_both_orders_cancels_a_position_bias(scale: Scale) -> None:
    """With a judge that prefers the first answer one time in five, the win rate over
    2,000 pairs judged both ways is within 0.02 of what the same judge without the
    bias measures on the same pairs; one order alone is far off. On each scale."""
    sim = _reliable()
    truth, truth_first = await _rates(sim, 0.0, scale=scale)
    biased, biased_first = await _rates(sim, 0.2, scale=scale)
    assert 0.3 < truth < 0.7  # candidate and stable close: the case that needs judging
    assert abs(biased - truth) <= 0.02, (biased, truth)
    # One order alone is pulled toward the first answer (on scores a biased call puts A
    # one step of four above B, often from level: less of a pull).
    shown = 0.02 if scale == "scores" else 0.05
    assert biased_first - truth_first > shown, (biased_first, truth_first)


@pytest.mark.parametrize("scale", ["graded", "scores"])
async def test_one_order_drawn_at_random_cancels_a_position_bias_with_half_the_calls(
    scale: Scale,
) -> None:
    """orders: 1 judges each pair once, in a random order: the same bias favours each
    side equally often, so the win rate stays within 0.02 of the unbiased judge's; and
    the judge is asked once per pair, not twice."""
    sim = _reliable()
    truth, _ = await _rates(sim, 0.0, orders=1, scale=scale)
    biased, _ = await _rates(sim, 0.2, orders=1, scale=scale)
    assert 0.3 < truth < 0.7
    assert abs(biased - truth) <= 0.02, (biased, truth)
    asked: list[str] = []
    real = sim.judge

    def counting(request: ChatRequest) -> Any:
        asked.append(request.request_id)
        return real(request)

    sim.judge = counting  # type: ignore[method-assign]
    judge = PairwiseJudge(
        PairwiseSettings(provider="simulator", model="sim-judge", rate=1.0,
                         max_usd_per_hour=1e9, max_pending=PAIRS, orders=1),
        GatewayMetrics(), price_catalog(None), lambda _: sim, seed=5,
    )  # fmt: skip
    candidate, stable = _variant("c1", "candidate", "0.5"), _variant("v1", "stable", "0.3")
    for i in range(PAIRS):
        creq = ChatRequest(model="sim-medium", messages=[{"role": "user", "content": "q"}],
                           parameters=Parameters(temperature="0.5"), request_id=f"q{i}")
        shadow = ChatRequest(model="sim-medium", messages=creq.messages,
                             parameters=Parameters(temperature="0.3"), request_id=f"q{i}-p")
        answer = await sim.complete(creq)
        assert await judge.judge_pair(creq, shadow, candidate, answer, stable, "bot") is not None
    assert len(asked) == PAIRS and len({a[:-3] for a in asked}) == PAIRS
    assert {a[-3:] for a in asked} == {"-ab", "-ba"}  # both orders occur
    with pytest.raises(ValueError, match="orders must be 1 or 2"):
        PairwiseSettings.from_options(0.1, {"model": "j", "orders": 3})


async def test_the_user_gets_the_candidates_answer_and_every_pair_is_counted(
    start_gateway: GatewayFactory,
) -> None:
    """Judging on (rate 1) changes nothing the user receives; each answer of the
    candidate is judged against stable's answer to the same request; the shadow and
    judge calls are evaluation cost, not stable's requests or cost."""
    sim = _reliable()
    pairwise = json.dumps([{"name": "pairwise", "rate": 1, "options": {
        "provider": "simulator", "model": "sim-judge", "maxUsdPerHour": 100}}])  # fmt: skip
    variants = [variant("v1", 0, role="stable", model="sim-medium"),
                variant("c1", 10000, model="sim-small")]  # fmt: skip
    judged, url = await start_gateway(variants, evaluators=pairwise,
                                      providers={"simulator": sim})  # fmt: skip
    _, plain_url = await start_gateway(variants, providers={"simulator": _reliable()})
    bodies: dict[str, list[Any]] = {"judged": [], "plain": []}
    async with aiohttp.ClientSession() as s:
        for i in range(30):
            for key, target in (("judged", url), ("plain", plain_url)):
                status, body, _ = await post_chat(s, target, headers={"X-Request-Id": f"r{i}"})
                assert status == 200
                bodies[key].append(body["choices"][0]["message"]["content"])
    assert judged.pairwise is not None
    await judged.pairwise.drain()
    assert bodies["judged"] == bodies["plain"]  # the same answers, judged or not
    outcomes = {o: metric_value(judged, "llmopt_pairwise_total", variant="c1", baseline="v1",
                                outcome=o) for o in ("win", "loss", "tie")}  # fmt: skip
    assert sum(outcomes.values()) == 30
    assert outcomes["loss"] > outcomes["win"]  # sim-small is the worse model
    assert metric_value(judged, "llmopt_requests_total", variant="v1") == 0
    assert metric_value(judged, "llmopt_cost_usd_total", variant="v1") == 0
    cost = metric_value(judged, "llmopt_evaluation_cost_usd_total", evaluator="pairwise")
    assert cost > 0
    assert metric_value(judged, "llmopt_evaluation_cost_usd_total", kind="shadow") > 0
    # Every shadowed pair also has its similarity to stable's answer.
    assert metric_value(
        judged, "llmopt_stable_similarity_count", variant="c1", baseline="v1"
    ) == 30
    mean = metric_value(
        judged, "llmopt_stable_similarity_sum", variant="c1", baseline="v1"
    ) / 30
    assert 0.0 < mean < 1.0  # the simulator's answers share filler, never their tags


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"provider": "simulator", "model": "sim-small"}, "judge_garbage"),  # no verdict
        ({"provider": "simulator", "model": "no-such-judge"}, "judge_error"),
        ({"provider": "simulator", "model": "sim-judge", "maxUsdPerHour": 0}, "spend_cap"),
    ],
)
async def test_a_bad_judge_or_the_spend_cap_skips_the_pair_and_counts_it(
    start_gateway: GatewayFactory, options: dict[str, Any], reason: str
) -> None:
    sim = _reliable()
    spec = json.dumps([{"name": "pairwise", "rate": 1, "options": options}])
    variants = [variant("v1", 0, role="stable"), variant("c1", 10000)]
    gateway, url = await start_gateway(variants, evaluators=spec, providers={"simulator": sim})
    async with aiohttp.ClientSession() as s:
        for i in range(5):
            status, _, _ = await post_chat(s, url, headers={"X-Request-Id": f"r{i}"})
            assert status == 200  # the user is never affected
    assert gateway.pairwise is not None
    await gateway.pairwise.drain()
    assert metric_value(gateway, "llmopt_pairwise_total") == 0  # never a verdict
    assert metric_value(gateway, "llmopt_pairwise_skipped_total", reason=reason) == 5


async def test_a_judge_that_hangs_is_cut_off_by_its_timeout() -> None:
    class Hanging:
        async def complete(self, request: ChatRequest) -> Any:
            await asyncio.sleep(3600)

    sim = _reliable()
    metrics = GatewayMetrics()
    judge = PairwiseJudge(
        PairwiseSettings(provider="hanging", model="j", rate=1.0, timeout=0.2),
        metrics, price_catalog(None), lambda name: Hanging() if name == "hanging" else sim,  # type: ignore[return-value,arg-type]
    )  # fmt: skip
    creq = ChatRequest(model="sim-medium", messages=[{"role": "user", "content": "q"}],
                       parameters=Parameters(), request_id="h1")  # fmt: skip
    answer = await sim.complete(creq)
    stable, candidate = _variant("v1", "stable", "0.3"), _variant("c1", "candidate", "0.5")
    task = judge.offer(creq, candidate, answer, stable, "bot")
    assert task is not None and await task is None
    skipped = [
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "llmopt_pairwise_skipped_total" and s.labels["reason"] == "judge_error"
    ]
    assert skipped == [1.0]


def test_the_gateway_command_takes_pairwise_judging_and_refuses_it_half_configured(
    tmp_path: Path,
) -> None:
    """As a user starts it (`llm-optimizer gateway --evaluators '[...]'`): a judge with
    its model serves; one without a model is one line naming what is missing, exit 2."""
    config = tmp_path / "variants.json"
    write_variants(config, [variant("v1", 10000, role="stable")])
    ok = json.dumps([{"name": "pairwise", "rate": 0.1, "options": {"model": "gpt-4o-mini"}}])
    port = free_port()
    gateway = Process(
        ["gateway", "--config", str(config), "--port", str(port), "--evaluators", ok],
        tmp_path / "gateway.log",
    )
    try:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz")
    finally:
        gateway.stop()
    bad = json.dumps([{"name": "pairwise", "rate": 0.1, "options": {}}])
    out = subprocess.run(
        [sys.executable, "-m", "optimizer_operator", "gateway", "--config", str(config),
         "--evaluators", bad],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --evaluators: evaluator pairwise needs option 'model' (the judge model)"
    ]


async def test_the_simulators_judge_reads_the_scale_from_the_instructions_only() -> None:
    """A user's request that itself mentions a "verdict" or '"A": <1-5>' does not change
    the form the simulator's judge answers in: it answers what the judge prompt asks."""
    sim = _reliable()
    for scale in ("winner", "graded", "scores"):
        judge = PairwiseJudge(
            PairwiseSettings(provider="simulator", model="sim-judge", rate=1.0, scale=scale),
            GatewayMetrics(), price_catalog(None), lambda _: sim, seed=5,
        )  # fmt: skip
        prompt = 'Reply with {"verdict": "yes"} or {"A": <1-5>, "B": <1-5>}, please.'
        creq = ChatRequest(model="sim-medium", messages=[{"role": "user", "content": prompt}],
                           parameters=Parameters(), request_id=f"u-{scale}")  # fmt: skip
        a, b = await sim.complete(creq), await sim.complete(creq)
        score = await judge._ask(f"u-{scale}-ab", prompt, a.text, b.text, "bot")
        assert 0.0 <= score <= 1.0  # a verdict of the scale asked, not garbage
