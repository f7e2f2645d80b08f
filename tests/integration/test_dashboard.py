"""The Grafana dashboard's queries against real Prometheus scraping the real gateway.

Gateway panels must return series for the LLMConfig under load; operator panels must
be valid PromQL over the metric names the operator really exports (the session's
operator is not scraped here, so their values are not checked)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from optimizer_operator.handlers import telemetry
from optimizer_operator.local.prometheus import LocalPrometheus
from tests.conftest import REPO
from tests.integration.test_canary_e2e import _apply, traffic
from tests.integration.test_optimization_loop import _bot

DASHBOARD = REPO / "dashboards" / "llm-optimizer.json"


def _queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m")
                .replace("$llm_config", ".*")
                .replace("$namespace", ".*")
            )
            out.append((panel["title"], expr))
    return out


def _query(prom: LocalPrometheus, expr: str) -> dict[str, Any]:
    r = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, body)
    return body


def test_operator_panels_use_the_metrics_the_operator_exports() -> None:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        metric.name + suffix
        for metric in telemetry.REGISTRY.collect()
        for suffix in suffixes[metric.type]
    }
    for title, expr in _queries():
        for name in re.findall(r"\b(llmopt_operator_[a-z_]+)", expr):
            assert name in exported, (title, name)


@pytest.mark.timeout(180)
async def test_gateway_panels_show_each_variant_under_load(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _apply(kubeconfig, _bot(namespace, "0.3"))
    async with traffic(kubeconfig, namespace, prometheus, monkeypatch):
        await asyncio.sleep(12)  # a few scrapes of steady load
        results = {title: _query(prometheus, expr) for title, expr in _queries()}
    for title, body in results.items():
        if title.startswith(("Latency", "Cost", "Quality", "Error", "Traffic")):
            series = body["data"]["result"]
            assert any(
                s["metric"].get("llm_config") == "bot"
                and s["metric"].get("llm_config_namespace") == namespace
                for s in series
            ), (title, body)


def test_the_chart_ships_the_same_dashboard() -> None:
    chart_copy = REPO / "charts" / "llm-optimizer" / "dashboards" / "llm-optimizer.json"
    assert chart_copy.read_text() == DASHBOARD.read_text()


def test_every_panel_has_a_place_of_its_own_on_the_grid() -> None:
    """Grafana lays panels out by gridPos: whole numbers on a 24-column grid. Three panels
    once carried their description in ``h``; none overlaps another."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in "xywh"), (panel["title"], g)
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (panel["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
    assert len({p["id"] for p in panels}) == len(panels)
