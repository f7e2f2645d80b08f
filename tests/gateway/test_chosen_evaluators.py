"""Chosen evaluators: quality_score made of the named evaluators with their weights,
computed by the real Prometheus from the real gateway's series. The gateway scores every
answer with two evaluators (ground truth and length); the PromQL the operator builds for
a choice must equal what the gateway's own counters give for that choice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from optimizer_operator.api.rollout import Analysis
from optimizer_operator.gateway.server import Gateway
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.aggregates import window_stats
from optimizer_operator.observe.prometheus import (
    BUILTIN,
    QUALITY_COUNTS,
    PrometheusSource,
    chosen_evaluators,
    render,
)
from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, variant


def _mean(gateway: Gateway, evaluator: str) -> float:
    total = metric_value(gateway, "llmopt_quality_score_sum", evaluator=evaluator)
    return total / metric_value(gateway, "llmopt_quality_score_count", evaluator=evaluator)


async def test_the_weighted_mean_of_the_chosen_evaluators_is_what_prometheus_computes(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway, url = await start_gateway(
        [variant("v1", 10000, role="stable")], evaluators="ground_truth=1,length=1"
    )
    prom = LocalPrometheus(tmp_path / "prom", [url.removeprefix("http://")], interval="1s")
    prom.start()
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(40):
                await post_chat(s, url, headers={"X-Request-Id": f"r{i}"})
        await gateway.evaluations.drain()
        source = PrometheusSource(prom.url, timeout=5)
        scored = metric_value(gateway, "llmopt_quality_score_count")
        deadline = time.monotonic() + 30
        while source.vector("sum(llmopt_quality_score_count)") != [({}, scored)]:
            assert time.monotonic() < deadline, "Prometheus never saw every score"
            await asyncio.sleep(0.5)

        def value(template: str, weights: tuple[tuple[str, float], ...]) -> float:
            # The counters as they stand (last_over_time for rate): exact means, where a
            # rate over a window would extrapolate.
            rendered = render(
                chosen_evaluators(template, weights).replace("rate(", "last_over_time("),
                llm_config="bot", variant="v1", namespace="default", window="1h",
            )  # fmt: skip
            return source.value(rendered)

        truth, length = _mean(gateway, "ground_truth"), _mean(gateway, "length")
        assert truth != pytest.approx(length)  # the two evaluators disagree: a real test
        quality = BUILTIN["quality_score"][0]
        assert value(quality, (("ground_truth", 1.0),)) == pytest.approx(truth, rel=1e-6)
        weighted = value(quality, (("ground_truth", 3.0), ("length", 1.0)))
        assert weighted == pytest.approx((3 * truth + length) / 4, rel=1e-6)
        # A chosen evaluator with no scores drops out; the weights of the rest decide.
        absent = value(quality, (("ground_truth", 3.0), ("llm_judge", 5.0)))
        assert absent == pytest.approx(truth, rel=1e-6)
        # Unchosen: every evaluator's scores pooled (the default).
        both = metric_value(gateway, "llmopt_quality_score_count")
        pooled = metric_value(gateway, "llmopt_quality_score_sum") / both
        assert value(quality, ()) == pytest.approx(pooled, rel=1e-6)
        # The bounds' per-request evidence holds only the chosen evaluators' scores.
        only_length = render(
            chosen_evaluators(QUALITY_COUNTS, (("length", 1.0),)).replace(
                "increase(", "last_over_time("
            ),
            llm_config="bot", variant="v1", namespace="default", window="1h",
        )  # fmt: skip
        counts = source.vector(only_length)
        assert [labels.get("evaluator") for labels, _ in counts] == ["length"]
    finally:
        prom.stop()


async def test_a_policys_observation_of_stable_is_made_of_the_chosen_evaluators(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """window_stats (a policy's windows on stable) with a choice: its rates see what
    changed inside the window, so a first batch is scored before Prometheus starts (its
    first scrape holds all of it) and the window's quality is the second batch's."""
    gateway, url = await start_gateway(
        [variant("v1", 10000, role="stable")], evaluators="ground_truth=1,length=1"
    )
    kinds = [(e, k) for e in ("ground_truth", "length") for k in ("sum", "count")]

    async def batch(first: int) -> dict[tuple[str, str], float]:
        async with aiohttp.ClientSession() as s:
            for i in range(first, first + 40):
                await post_chat(s, url, headers={"X-Request-Id": f"r{i}"})
        await gateway.evaluations.drain()
        return {(e, k): metric_value(gateway, f"llmopt_quality_score_{k}", evaluator=e)
                for e, k in kinds}  # fmt: skip

    async def seen(source: PrometheusSource) -> None:
        scored = metric_value(gateway, "llmopt_quality_score_count")
        deadline = time.monotonic() + 30
        while source.vector("sum(llmopt_quality_score_count)") != [({}, scored)]:
            assert time.monotonic() < deadline, "Prometheus never saw every score"
            await asyncio.sleep(0.5)

    before = await batch(0)
    prom = LocalPrometheus(tmp_path / "prom", [url.removeprefix("http://")], interval="1s")
    prom.start()
    try:
        source = PrometheusSource(prom.url, timeout=5)
        await seen(source)
        after = await batch(40)
        await seen(source)
        added = {key: after[key] - before[key] for key in kinds}
        truth = added[("ground_truth", "sum")] / added[("ground_truth", "count")]
        pooled = (added[("ground_truth", "sum")] + added[("length", "sum")]) / (
            added[("ground_truth", "count")] + added[("length", "count")]
        )
        assert truth != pytest.approx(pooled)  # the choice matters: a real test

        def observed(weights: tuple[tuple[str, float], ...]) -> float:
            return window_stats(source, namespace="default", llm_config="bot", variant="v1",
                                window_seconds=60, evaluators=weights)["quality_score"]  # fmt: skip

        assert observed((("ground_truth", 1.0),)) == pytest.approx(truth, rel=1e-6)
        assert observed(()) == pytest.approx(pooled, rel=1e-6)
    finally:
        prom.stop()


def test_a_choice_names_each_evaluator_once_with_a_positive_weight() -> None:
    ok = Analysis.model_validate(
        {"quality": {"evaluators": [{"name": "llm_judge", "weight": "2"}, {"name": "feedback"}]}}
    )
    assert ok.quality is not None
    assert ok.quality.weights() == (("llm_judge", 2.0), ("feedback", 1.0))
    for bad in (
        [{"name": "llm_judge"}, {"name": "llm_judge"}],
        [{"name": "llm_judge", "weight": "0"}],
        [{"name": 'x"} or vector(1) #'}],
        [],
    ):
        with pytest.raises(ValueError):
            Analysis.model_validate({"quality": {"evaluators": bad}})
