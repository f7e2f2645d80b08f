"""A policy constrained on pairwise judging (``constraints.minWinRate``), end to end, as a
new user on a real provider would run it: the LLMConfig uses the ``openai`` provider
against an OpenAI-compatible server that returns no ground truth (the project's
simulator in its plain mode), through the real gateway (evaluator ``pairwise``, the
judge is that server's ``sim-judge``, the project's stand-in for a judge model: no real
one can run here), Prometheus and the operator.

The policy minimises cost per request under ``minWinRate: 0.4`` (not worse than stable
by more than 0.1). Model screening tries the cheapest model first: sim-small (quality
about 0.68 against stable's 0.84) loses most pairs and is rolled back on its win rate;
what the upstream serves as gpt-4o-mini (sim-medium's answers, priced by the catalog at
about a third of sim-medium) is not worse and is promoted. The baseline (stable
measured as it runs) needs no pairwise evidence: stable's win rate against itself is
even."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.prometheus import LocalPrometheus
from tests.integration.test_canary_e2e import _apply, traffic
from tests.integration.test_pairwise_rollout import LITE, _fleet_with_lite, _judged_by
from tests.integration.test_quality_signal import (
    _get,
    _openai,
    _until,
    apply_bot,
    plain_upstream,
)


def _policy(namespace: str, upstream: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationPolicy",
        "metadata": {"name": "judged", "namespace": namespace},
        "spec": {
            "targetRef": {"name": "bot"},
            "mode": "auto",
            "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
            "constraints": {"minWinRate": "0.4"},
            "searchSpace": {
                "models": [
                    _openai("sim-medium", upstream),  # stable's: trial 0 is the baseline
                    _openai("sim-small", upstream),
                    _openai(LITE, upstream),
                ],
            },
            "sampler": {"name": "tpe", "seed": 3},
            "schedule": {"triggers": [{"type": "interval", "every": "2s"}], "cooldown": "1s"},
            "budgets": {"maxTrials": 4, "maxRolloutsPerDay": 20},
            "rolloutTemplate": {
                "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                "postPromotion": {"bake": "3s"},
                "analysis": {
                    "interval": "2s",
                    "window": "10s",
                    "minSampleSize": 20,
                    "inconclusiveLimit": 200,
                    "metrics": [{"name": "error_rate", "comparison": "sequential"}],
                },
            },
        },
    }


@pytest.mark.timeout(420)
async def test_min_win_rate_rolls_back_the_worse_model_and_promotes_the_cheaper_equal(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = _fleet_with_lite()
    async with plain_upstream(fleet) as upstream:
        stable = _openai("sim-medium", upstream)
        stable["parameters"] = {"temperature": "0.3", "maxTokens": 512}
        await apply_bot(api, kubeconfig, namespace, stable)
        async with traffic(
            kubeconfig, namespace, prometheus, monkeypatch, evaluators=_judged_by(upstream)
        ):
            _apply(kubeconfig, _policy(namespace, upstream))

            def promoted() -> Any:
                status = _get(api, namespace, "optimizationpolicies", "judged").get("status")
                records = (status or {}).get("trialRecords") or []
                return [r for r in records if r.get("outcome") == "Promoted"] and records

            try:
                records = await _until(promoted, 330, "a promoted trial")
            except AssertionError as exc:
                policy = _get(api, namespace, "optimizationpolicies", "judged")
                rollouts = client.CustomObjectsApi(api).list_namespaced_custom_object(
                    GROUP, VERSION, namespace, "rollouts"
                )["items"]
                phases = {r["metadata"]["name"]: r.get("status") for r in rollouts}
                raise AssertionError(f"{exc}: {policy.get('status')}; {phases}") from None
    baseline = records[0]
    assert baseline["outcome"] == "Baseline", baseline
    assert baseline["metrics"]["win_rate"] == "0.5"  # stable against itself, not read
    by_model = {r["params"]["model"]: r for r in records[1:]}
    small = by_model["openai/sim-small"]
    assert small["outcome"] != "Promoted" and float(small["constraints"]["minWinRate"]) > 0, small
    lite = by_model[f"openai/{LITE}"]
    assert lite["outcome"] == "Promoted", lite
    assert float(lite["metrics"]["win_rate"]) >= 0.4, lite
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert history[-1]["model"] == LITE
