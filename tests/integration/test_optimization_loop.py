"""The optimization loop end to end: policy -> Optuna trial -> Rollout -> evidence -> study.

Real operator, real Prometheus, the real gateway watching the ConfigMap, the
simulator under continuous load. The stable configuration starts at a poor
temperature (sim-medium at 1.2: quality 0.70 by the simulator's oracle); the
search space holds better temperatures (about 0.82) and a cheaper model below
the quality floor (sim-small, about 0.65).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.localprometheus import LocalPrometheus
from tests.integration.test_canary_e2e import ANALYSIS, _apply, traffic


def _policy(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationPolicy",
        "metadata": {"name": "tune", "namespace": namespace},
        "spec": {
            "targetRef": {"name": "bot"},
            "mode": "auto",
            "objectives": [
                {"metric": "quality_score", "direction": "maximize", "weight": "0.7"},
                {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.3"},
            ],
            "constraints": {"minQuality": "0.75"},
            "searchSpace": {
                "models": [
                    {"provider": "simulator", "model": "sim-small"},
                    {"provider": "simulator", "model": "sim-medium"},
                ],
                "parameters": [
                    {
                        "name": "temperature",
                        "type": "float",
                        "low": "0.1",
                        "high": "0.7",
                        "step": "0.1",
                    }
                ],
            },
            "sampler": {"name": "tpe", "seed": 11},
            "schedule": {"triggers": [{"type": "interval", "every": "2s"}], "cooldown": "1s"},
            "budgets": {"maxTrials": 8, "maxRolloutsPerDay": 20},
            "rolloutTemplate": {
                "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                "analysis": ANALYSIS,
            },
        },
    }


def _get(api: client.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return obj


@pytest.mark.timeout(420)
async def test_the_loop_promotes_a_better_config_and_survives_a_restart(
    api: client.ApiClient,
    kubeconfig: Path,
    operator_process: Any,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    llmc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": namespace},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "parameters": {"temperature": "1.2", "maxTokens": 512},
        },
    }
    _apply(kubeconfig, llmc)
    custom = client.CustomObjectsApi(api)
    async with traffic(kubeconfig, namespace, prometheus, monkeypatch):
        _apply(kubeconfig, _policy(namespace))
        # The first trial's Rollout appears; kill the operator while it runs.
        for _ in range(60):
            records = (
                _get(api, namespace, "optimizationpolicies", "tune")
                .get("status", {})
                .get("trialRecords", [])
            )
            if any(r.get("rollout") for r in records):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"no trial rollout: {records}")
        operator_process.kill()
        await asyncio.sleep(2)
        operator_process.start()
        promoted = None
        for _ in range(300):
            status = _get(api, namespace, "optimizationpolicies", "tune").get("status", {})
            records = status.get("trialRecords", [])
            promoted = next((r for r in records if r.get("outcome") == "Promoted"), None)
            if promoted:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"nothing promoted: {status}")
    # Every trial with a Rollout has exactly one, linked back to its trial number.
    rollouts = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts")["items"]
    by_name = {r["metadata"]["name"]: r for r in rollouts}
    with_rollout = [r for r in records if r.get("rollout")]
    assert sorted(by_name) == sorted(r["rollout"] for r in with_rollout)
    for r in with_rollout:
        assert by_name[r["rollout"]]["spec"]["trial"] == {"policy": "tune", "number": r["number"]}
    assert [r["number"] for r in records] == list(range(len(records)))  # none lost or repeated
    # The promoted trial is sim-medium at a better temperature, measured better than stable.
    assert promoted["params"]["model"] == "simulator/sim-medium", promoted
    assert float(promoted["params"]["temperature"]) <= 0.7
    assert float(promoted["score"]) > 0 and float(promoted["values"][0]) > 0.75
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert history[-1]["source"] == f"rollout/{promoted['rollout']}"
    assert history[-1]["parameters"]["temperature"] == promoted["params"]["temperature"]
    # Anything below the quality floor was judged infeasible, never promoted.
    for r in records:
        if r.get("params", {}).get("model") == "simulator/sim-small" and r["state"] == "Complete":
            assert r["outcome"] in ("Infeasible", "RolledBack"), r
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=tune"
    )
    assert {"TrialStarted", "TrialPromoted"} <= {e.reason for e in events.items}
