"""Rollouts decided on pairwise judging against stable, end to end, as a new user on a
real provider would run them: the LLMConfig uses the ``openai`` provider against an
OpenAI-compatible server that returns no ground truth (the project's simulator in its
plain mode), through the real gateway (evaluator ``pairwise``), Prometheus and operator.
The judge is the same server's judge model ``sim-judge`` — the project's stand-in for a
judge model, whose verdicts follow the hidden quality of the answers it served (noise
0.1, no position bias); no real judge model can run here.

A worse candidate is rolled back on win_rate; a cheaper one that is not worse is promoted
on it (win_rate confidently at least 0.4: not worse than stable by more than 0.1). The
cheaper one is what the upstream serves as ``gpt-4o-mini``: sim-medium's answers (its
hidden quality) under a model name the pricing catalog prices at a third of
sim-medium's, so gateway and operator price it as they would the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.providers.catalog import price_catalog
from optimizer_operator.providers.simulator import Fleet, parse_fleet
from tests.integration.test_canary_e2e import _apply, _until_terminal, traffic
from tests.integration.test_quality_signal import (
    _get,
    _openai,
    _until,
    apply_bot,
    plain_upstream,
)

ANALYSIS = {
    "interval": "2s",
    "window": "10s",
    "minSampleSize": 20,
    "inconclusiveLimit": 200,
    "metrics": [
        {"name": "error_rate", "comparison": "sequential"},
        {"name": "win_rate", "comparison": "none", "threshold": {"min": "0.4"}},
    ],
    "rollbackTriggers": [{"name": "win_rate", "min": "0.4"}],
}


LITE = "gpt-4o-mini"  # in the catalog at 0.15 / 0.60 per 1M tokens; sim-medium 0.60 / 1.80


def _fleet_with_lite() -> Fleet:
    """The default fleet and LITE: sim-medium's answers, at LITE's catalog price."""
    from importlib import resources

    doc = yaml.safe_load(
        resources.files("optimizer_operator.providers")
        .joinpath("data/simulator-fleet.yaml")
        .read_text()
    )
    lite = json.loads(json.dumps(doc["models"]["sim-medium"]))
    price = price_catalog(None).price(LITE)
    assert price is not None, f"{LITE} left the pricing catalog"
    lite["price"] = {"input": str(price.input_per_mtok), "output": str(price.output_per_mtok)}
    doc["models"][LITE] = lite
    return parse_fleet(doc)


def _judged_by(upstream: str) -> str:
    return json.dumps([{"name": "pairwise", "rate": 1, "options": {
        "provider": "openai", "model": "sim-judge", "endpoint": {"baseUrl": upstream},
        "maxUsdPerHour": 100}}])  # fmt: skip


async def _run(
    api: client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
    candidate: dict[str, Any],
    analysis: dict[str, Any] = ANALYSIS,
    *,
    judged: bool = True,
    until: Any = None,
) -> dict[str, Any]:
    """The Rollout ``judged`` from stable sim-medium to ``candidate`` under traffic, until
    it ends (or ``until(rollout)`` is true); ``judged``: the gateway judges pairs."""
    fleet = _fleet_with_lite()
    async with plain_upstream(fleet) as upstream:
        stable = _openai("sim-medium", upstream)
        stable["parameters"] = {"temperature": "0.3", "maxTokens": 512}
        await apply_bot(api, kubeconfig, namespace, stable)
        evaluators = _judged_by(upstream) if judged else "ground_truth=1"  # the default
        async with traffic(kubeconfig, namespace, prometheus, monkeypatch, evaluators=evaluators):
            _apply(kubeconfig, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
                "metadata": {"name": "judged", "namespace": namespace},
                "spec": {"targetRef": {"name": "bot"},
                         "candidate": {**_openai(candidate["model"], upstream),
                                       "parameters": candidate["parameters"]},
                         "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                         "analysis": analysis, "progressDeadline": "5m"},
            })  # fmt: skip
            if until is None:
                return await _until_terminal(api, namespace, "judged", timeout=200)
            try:
                return await _until(  # type: ignore[no-any-return]
                    lambda: (r := _get(api, namespace, "rollouts", "judged")) and until(r) and r,
                    120,
                    "the rollout's hold",
                )
            except AssertionError as exc:
                status = _get(api, namespace, "rollouts", "judged").get("status")
                raise AssertionError(f"{exc}: {status}") from None


@pytest.mark.timeout(300)
async def test_a_worse_candidate_is_rolled_back_on_its_win_rate(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sim-small: quality about 0.68 against sim-medium's 0.84; it loses most pairs.
    ro = await _run(api, kubeconfig, namespace, prometheus, monkeypatch,
                    {"model": "sim-small", "parameters": {"temperature": "0.3"}})  # fmt: skip
    assert ro["status"]["phase"] == "RolledBack", ro["status"]
    assert "win_rate" in ro["status"]["message"], ro["status"]["message"]
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert [h["version"] for h in history] == [1]


@pytest.mark.timeout(300)
async def test_a_cheaper_candidate_not_worse_is_promoted_on_its_win_rate(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sim-medium's answers at about a third of the price: as good (win rate about 0.5). Cost per
    # request is compared beside it (dry run: it decides nothing, it shows the saving).
    analysis = json.loads(json.dumps(ANALYSIS))
    analysis["metrics"].append(
        {"name": "cost_per_request_usd", "comparison": "sequential", "dryRun": True}
    )
    ro = await _run(api, kubeconfig, namespace, prometheus, monkeypatch,
                    {"model": LITE, "parameters": {"temperature": "0.3", "maxTokens": 512}},
                    analysis)  # fmt: skip
    assert ro["status"]["phase"] == "Promoted", ro["status"]
    results = {r["metric"]: r for r in ro["status"]["results"]}
    assert results["win_rate_threshold"]["verdict"] == "Pass", ro["status"]["results"]
    cost = results["cost_per_request_usd"]
    assert float(cost["canary"]) < float(cost["stable"]) / 2, cost  # a third, give or take
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert [h["version"] for h in history] == [1, 2]
    assert history[-1]["model"] == LITE


@pytest.mark.timeout(300)
async def test_without_the_pairwise_evaluator_the_rollout_holds_and_names_it(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Rollout decided on win_rate through a gateway that judges no pairs: it holds
    (never promoted, never rolled back on missing evidence) and says which evaluator
    makes the number."""

    def holding(ro: dict[str, Any]) -> bool:
        st = ro.get("status") or {}
        return st.get("phase") == "Holding" and "no judged pairs" in st.get("message", "")

    ro = await _run(api, kubeconfig, namespace, prometheus, monkeypatch,
                    {"model": LITE, "parameters": {"temperature": "0.3", "maxTokens": 512}},
                    judged=False, until=holding)  # fmt: skip
    assert "pairwise evaluator" in ro["status"]["message"], ro["status"]
    degraded = next(c for c in ro["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "MetricsUnavailable", degraded
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert [h["version"] for h in history] == [1]
