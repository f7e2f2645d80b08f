"""The Argo Rollouts AnalysisTemplate and the Flagger MetricTemplates in examples/, run
against the real Prometheus scraping the real gateway with a known traffic mix: each
query, its placeholders filled as Argo Rollouts and Flagger fill them, returns what the
gateway's own counters say for the candidate (error rate, cost per request, quality,
win rate). Neither controller can run here; their templating is a plain substitution of
the placeholders, done below."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from optimizer_operator.gateway.server import Gateway
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.prometheus import PrometheusSource
from optimizer_operator.providers.simulator import SimulatorProvider, parse_fleet
from tests.conftest import REPO
from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, variant

EXAMPLES = REPO / "examples"
SELECTOR = 'variant="c1"'


def _fleet_with_errors() -> Any:
    """The default fleet; sim-small fails one request in five (so errors are counted)."""
    doc = yaml.safe_load(
        resources.files("optimizer_operator.providers")
        .joinpath("data/simulator-fleet.yaml")
        .read_text()
    )
    for model in doc["models"].values():
        model["timeoutRate"] = "0"
    doc["models"]["sim-small"]["errorRate"] = "0.2"
    doc["models"]["sim-medium"]["errorRate"] = "0"
    return parse_fleet(doc)


def argo_queries() -> dict[str, str]:
    doc = yaml.safe_load((EXAMPLES / "argo-rollouts" / "analysistemplate.yaml").read_text())
    args = {"namespace": "default", "llm-config": "bot", "selector": SELECTOR, "window": "60s"}
    declared = {a["name"] for a in doc["spec"]["args"]}
    assert set(args) <= declared, declared
    out = {}
    for m in doc["spec"]["metrics"]:
        query = m["provider"]["prometheus"]["query"]
        for name, value in args.items():
            query = query.replace("{{args." + name + "}}", value)
        assert "{{" not in query, query
        out[m["name"]] = query
    return out


def flagger_queries() -> dict[str, str]:
    docs = list(yaml.safe_load_all((EXAMPLES / "flagger" / "metrictemplates.yaml").read_text()))
    fill = {"{{ namespace }}": "default", "{{ interval }}": "60s",
            "{{ variables.llmConfig }}": "bot", "{{ variables.selector }}": SELECTOR}  # fmt: skip
    out = {}
    for d in docs:
        assert d["kind"] == "MetricTemplate" and d["spec"]["provider"]["type"] == "prometheus"
        query = d["spec"]["query"]
        for key, value in fill.items():
            query = query.replace(key, value)
        assert "{{" not in query, query
        out[d["metadata"]["name"]] = query
    return out


async def test_each_interop_query_returns_the_gateways_own_count_for_the_candidate(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    judge = json.dumps([{"name": "ground_truth", "rate": 1}, {"name": "pairwise", "rate": 1,
                        "options": {"provider": "simulator", "model": "sim-judge",
                                    "maxUsdPerHour": 1000}}])  # fmt: skip
    gateway, url = await start_gateway(
        [variant("v1", 5000, role="stable", model="sim-medium"),
         variant("c1", 5000, model="sim-small")],
        evaluators=judge, max_attempts=1,
        providers={"simulator": SimulatorProvider(_fleet_with_errors(), time_scale=0)},
    )  # fmt: skip
    names = {"requests": "llmopt_requests_total", "errors": "llmopt_errors_total",
             "cost": "llmopt_cost_usd_total", "qsum": "llmopt_quality_score_sum",
             "qcount": "llmopt_quality_score_count", "psum": "llmopt_pairwise_score_sum",
             "pcount": "llmopt_pairwise_score_count"}  # fmt: skip

    def counts() -> dict[str, float]:
        out = {k: metric_value(gateway, n, variant="c1") for k, n in names.items()}
        out["ok"] = metric_value(gateway, "llmopt_requests_total", variant="c1", status="200")
        for o in ("win", "tie", "loss"):
            out[o] = metric_value(gateway, "llmopt_pairwise_total", variant="c1", outcome=o)
        return out

    async def batch(first: int) -> dict[str, float]:
        async with aiohttp.ClientSession() as s:
            for i in range(first, first + 120):
                await post_chat(s, url, headers={"X-Request-Id": f"r{i}"})
        await gateway.evaluations.drain()
        assert gateway.pairwise is not None
        await gateway.pairwise.drain()
        return counts()

    # Rates see what changed inside the window: a first batch before Prometheus
    # starts (its first scrape holds all of it), then the batch the queries measure.
    before = await batch(0)
    prom = LocalPrometheus(tmp_path / "prom", [url.removeprefix("http://")], interval="1s")
    prom.start()
    try:
        source = PrometheusSource(prom.url, timeout=5)
        await _seen(source, gateway, before["requests"])
        # Some scrapes of the first batch before the second: a rate extrapolates each
        # series alike only when its samples span more than a scrape or two.
        await asyncio.sleep(4)
        after = await batch(120)
        await _seen(source, gateway, after["requests"])
        d = {k: after[k] - before[k] for k in after}
        assert d["errors"] > 0 and d["win"] + d["tie"] + d["loss"] > 0  # a real mix
        expected = {
            "error": d["errors"] / d["requests"],
            "cost": d["cost"] / d["ok"],
            "quality": d["qsum"] / d["qcount"],
            "win": d["psum"] / d["pcount"],
        }
        for queries in (argo_queries(), flagger_queries()):
            assert len(queries) == 4
            for name, query in queries.items():
                kind = next(k for k in expected if k in name)
                got = source.value(query)
                assert got == pytest.approx(expected[kind], rel=1e-6), (name, got, expected)
    finally:
        prom.stop()


async def _seen(source: PrometheusSource, gateway: Gateway, requests: float) -> None:
    """Until Prometheus holds the gateway's latest count of the candidate's requests."""
    deadline = time.monotonic() + 30
    query = 'sum(llmopt_requests_total{variant="c1"})'
    while source.vector(query) != [({}, requests)]:
        assert time.monotonic() < deadline, "Prometheus never saw the batch"
        await asyncio.sleep(0.5)
    # Every counter was final before this scrape (evaluations and judging drained), and
    # one scrape reads them all at once: the quality and pairwise series are there too.
