"""A router config end to end: the operator checks and inlines its artifact, a Rollout
canaries it against GPT-4 on GSM8K replay traffic through the real gateway and
Prometheus, promotes a router that is cheaper at the quality floor, and rolls back one
whose threshold sends everything to the cheap model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.gateway.server import Gateway, GatewaySettings
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.providers.replay import DEFAULT_DATASET, ReplayProvider, load_dataset
from optimizer_operator.routers import dataset as datasets
from optimizer_operator.routers.model import Router
from tests.conftest import kubectl, wait_for
from tests.gateway.conftest import serve

pytestmark = pytest.mark.skipif(
    not DEFAULT_DATASET.exists(), reason="../shared/data/gsm8k_responses.csv absent"
)
CHEAP, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def trained() -> tuple[str, str]:
    """A prompt router trained on GSM8K (in-sample here: this test checks the loop, the
    benchmark measures routers on unseen questions), and the threshold that sends 60% of
    the questions to GPT-4."""
    ds = datasets.load(DEFAULT_DATASET)
    router = Router.train("prompt", ds.prompts, ds.correct[CHEAP], cheap=CHEAP,
                          strong=STRONG, c=1.0)  # fmt: skip
    threshold = float(np.quantile(router.scores(ds.prompts), 0.6))
    return router.dumps(), f"{threshold:.4f}"


@pytest.fixture(scope="module")
def artifact(trained: tuple[str, str]) -> str:
    return trained[0]


def _apply(kubeconfig: Path, *docs: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def _artifact_cm(ns: str, text: str) -> dict[str, Any]:
    meta = {"name": "gsm8k-router", "namespace": ns}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"router.json": text},
    }


def _router(threshold: str, digest: str) -> dict[str, Any]:
    return {
        "provider": "replay",
        "model": CHEAP,
        "router": {
            "mode": "prompt",
            "threshold": threshold,
            "artifact": {"name": "gsm8k-router", "digest": digest},
            "strong": {"provider": "replay", "model": STRONG},
        },
    }


def _llmconfig(ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
            "metadata": {"name": "bot", "namespace": ns}, "spec": spec}  # fmt: skip


def _read(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name
    )
    return obj


def _ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == "Ready"), None)  # fmt: skip


def test_the_operator_checks_and_inlines_the_router_artifact(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str, artifact: str
) -> None:
    ns, digest = namespace, json.loads(artifact)["digest"]
    _apply(kubeconfig, _llmconfig(ns, _router("0.5", digest)))
    ready = wait_for(lambda: _ready(_read(api, ns, "llmconfigs", "bot")), 30, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RouterArtifactInvalid"
    assert ready["message"].startswith(f"spec.router.artifact: ConfigMap {ns}/gsm8k-router key "
                                       "router.json: the ConfigMap does not exist")  # fmt: skip
    assert not (_read(api, ns, "llmconfigs", "bot").get("status") or {}).get("history")
    retrained = json.loads(artifact)
    _apply(kubeconfig, _artifact_cm(ns, artifact))
    _apply(kubeconfig, _llmconfig(ns, _router("0.5", "0" * 64)))
    wait_for(lambda: "is not the one the spec pins" in
             (_ready(_read(api, ns, "llmconfigs", "bot")) or {}).get("message", ""), 30,
             "the digest refused")  # fmt: skip
    _apply(kubeconfig, _llmconfig(ns, _router("0.5", retrained["digest"])))
    wait_for(lambda: (_ready(_read(api, ns, "llmconfigs", "bot")) or {}).get("status") == "True",
             30, "Ready with the right digest")  # fmt: skip
    cm = client.CoreV1Api(api).read_namespaced_config_map("bot-llm-config", ns)
    (stable,) = json.loads(cm.data["variants.json"])["variants"]
    assert stable["router"]["artifact"] == artifact and stable["router"]["threshold"] == "0.5"
    assert stable["model"] == CHEAP and stable["router"]["strong"]["model"] == STRONG


@contextlib.asynccontextmanager
async def replay_traffic(
    kubeconfig: Path,
    ns: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
    record: Path | None = None,
) -> AsyncIterator[Gateway]:
    """The real gateway on the LLMConfig's ConfigMap, answering GSM8K questions from the
    recorded responses (ground truth: their correctness), scraped by Prometheus;
    recording its traffic to ``record`` when given."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    gateway = Gateway(GatewaySettings(
        configmap=f"{ns}/bot-llm-config",
        providers={"replay": ReplayProvider(load_dataset(DEFAULT_DATASET), time_scale=0.01)},
        evaluators="ground_truth=1",
        record=record,
        record_redaction="none",
    ))  # fmt: skip
    runner, url = await serve(gateway.app())
    prometheus.set_targets([url.removeprefix("http://")])
    prompts = datasets.load(DEFAULT_DATASET).prompts
    stop = asyncio.Event()

    async def load(worker: int) -> None:
        rng = random.Random(31 * worker + 5)
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                body = {"messages": [{"role": "user", "content": rng.choice(prompts)}]}
                headers = {"X-Request-Id": f"{rng.getrandbits(64):x}"}
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.post(url + "/v1/chat/completions", json=body,
                                      headers=headers) as resp:  # fmt: skip
                        await resp.read()
                await asyncio.sleep(1 / 40)

    tasks = [asyncio.create_task(load(w)) for w in range(3)]
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        prometheus.set_targets([])
        await runner.cleanup()


def _rollout(ns: str, name: str, candidate: dict[str, Any]) -> dict[str, Any]:
    floor = {"name": "quality_score", "severity": "critical", "min": "0.74"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "candidate": candidate,
            "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
            "analysis": {
                "interval": "3s", "window": "15s", "minSampleSize": 80,
                "inconclusiveLimit": 30,
                "metrics": [
                    # At the quality floor, and cheaper than GPT-4 alone ($0.0038 a question).
                    {"name": "quality_score", "comparison": "none", "threshold": {"min": "0.74"}},
                    {"name": "cost_per_request_usd", "comparison": "none",
                     "threshold": {"max": "0.0032"}},
                ],
                "rollbackTriggers": [floor],
            },
            "progressDeadline": "5m",
        },
    }  # fmt: skip


async def _until_terminal(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    for _ in range(200):
        status = _read(api, ns, "rollouts", name).get("status") or {}
        if status.get("phase") in ("Promoted", "RolledBack", "Aborted", "Failed"):
            return status
        await asyncio.sleep(1)
    raise AssertionError(f"rollout {name} did not end: {json.dumps(status)[:2000]}")


@pytest.mark.timeout(420)
async def test_a_router_cheaper_at_the_floor_is_promoted_and_a_greedy_one_rolled_back(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[str, str],
) -> None:
    artifact, threshold = trained
    ns, digest = namespace, json.loads(artifact)["digest"]
    _apply(kubeconfig, _artifact_cm(ns, artifact), _llmconfig(ns, {"provider": "replay",
                                                                   "model": STRONG}))  # fmt: skip
    wait_for(lambda: (_read(api, ns, "llmconfigs", "bot").get("status") or {}).get("history"),
             30, "GPT-4 as v1")  # fmt: skip
    async with replay_traffic(kubeconfig, ns, prometheus, monkeypatch) as gateway:
        # Threshold 0: every question to Mixtral (63.8% right), under the 0.74 floor.
        _apply(kubeconfig, _rollout(ns, "greedy", _router("0", digest)))
        greedy = await _until_terminal(api, ns, "greedy")
        _apply(kubeconfig, _rollout(ns, "balanced", _router(threshold, digest)))
        balanced = await _until_terminal(api, ns, "balanced")
        decisions = {
            s.labels["target"]: s.value
            for f in gateway.metrics.registry.collect() for s in f.samples
            if s.name == "llmopt_router_decisions_total"
        }  # fmt: skip
    assert greedy["phase"] == "RolledBack", greedy
    assert "quality_score" in greedy["message"]
    assert balanced["phase"] == "Promoted", balanced
    last_step = balanced["stepResults"][-1]
    assert last_step["verdict"] == "Pass", last_step
    results = {r["metric"]: r for r in last_step["results"]}
    # Threshold checks are reported as <metric>_threshold.
    assert results["quality_score_threshold"]["verdict"] == "Pass"
    assert results["cost_per_request_usd_threshold"]["verdict"] == "Pass"
    assert float(results["cost_per_request_usd_threshold"]["canary"]) < 0.0032
    assert decisions.get("cheap", 0) > 0 and decisions.get("strong", 0) > 0
    llmc = _read(api, ns, "llmconfigs", "bot")
    newest = llmc["status"]["history"][-1]
    assert newest["source"] == "rollout/balanced" and newest["router"]["threshold"] == threshold
    assert [q["rollout"] for q in llmc["status"].get("quarantine") or []] == ["greedy"]


def _policy(ns: str, digest: str) -> dict[str, Any]:
    """Cost first at a 0.80 floor over Mixtral alone (63.8% right: below it), GPT-4 alone
    (85.7%, stable) and a router between them declared at 0.45 (in-sample: 5% to GPT-4,
    67.9% right: too greedy); the threshold searched from 0.4 to 0.8 in steps of 0.05."""
    router = {"mode": "prompt", "threshold": "0.45",
              "artifact": {"name": "gsm8k-router", "digest": digest},
              "strong": {"provider": "replay", "model": STRONG}}  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "OptimizationPolicy",
        "metadata": {"name": "tune", "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "mode": "auto",
            "strategy": "trials",
            "objectives": [
                {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.7"},
                {"metric": "quality_score", "direction": "maximize", "weight": "0.3"},
            ],
            "constraints": {"minQuality": "0.80"},
            "searchSpace": {
                "models": [
                    {"provider": "replay", "model": CHEAP},
                    {"provider": "replay", "model": STRONG},
                    {"provider": "replay", "model": CHEAP, "router": router},
                ],
                "parameters": [{"name": "routerThreshold", "type": "float", "low": "0.4",
                                "high": "0.8", "step": "0.05"}],
            },
            "sampler": {"name": "tpe", "seed": 5},
            "schedule": {"triggers": [{"type": "interval", "every": "2s"}], "cooldown": "1s"},
            # The baseline, Mixtral, the router as declared, then its threshold search.
            "budgets": {"maxTrials": 4, "maxRolloutsPerDay": 10},
            "rolloutTemplate": {
                "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                "postPromotion": {"bake": "3s"},
                "analysis": {"interval": "3s", "window": "15s", "minSampleSize": 80,
                             "inconclusiveLimit": 30},
            },
        },
    }  # fmt: skip


@pytest.mark.timeout(480)
async def test_a_policy_searching_a_router_promotes_one_cheaper_than_any_single_model(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
    artifact: str,
) -> None:
    """The policy measures GPT-4 as it runs, screens Mixtral (rolled back by the floor)
    and the router at its declared threshold (too greedy: rolled back by the floor), then
    bisects the threshold and promotes a router at the floor for far less than GPT-4."""
    ns, digest = namespace, json.loads(artifact)["digest"]
    _apply(kubeconfig, _artifact_cm(ns, artifact),
           _llmconfig(ns, {"provider": "replay", "model": STRONG}))  # fmt: skip
    wait_for(lambda: (_read(api, ns, "llmconfigs", "bot").get("status") or {}).get("history"),
             30, "GPT-4 as v1")  # fmt: skip
    async with replay_traffic(kubeconfig, ns, prometheus, monkeypatch):
        _apply(kubeconfig, _policy(ns, digest))
        status: dict[str, Any] = {}
        for _ in range(420):
            status = _read(api, ns, "optimizationpolicies", "tune").get("status") or {}
            if "budget spent" in (status.get("message") or ""):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"the policy did not spend its 4 trials: {json.dumps(status)}")
    routed = f"replay/{CHEAP}@router:replay/{STRONG}"
    records = status["trialRecords"]
    assert [r["params"].get("model") for r in records] == [
        f"replay/{STRONG}", f"replay/{CHEAP}", routed, routed
    ], records  # fmt: skip
    baseline, mixtral, greedy, searched = records
    assert baseline.get("rollout") is None  # GPT-4 measured on its own traffic
    assert float(baseline["metrics"]["quality_score"]) >= 0.80
    # Below the floor, each rolled back by the floor's critical trigger on its canary.
    for r in (mixtral, greedy):
        assert r["outcome"] in ("RolledBack", "Infeasible"), r
        assert float(r["constraints"]["minQuality"]) > 0, r
    assert greedy["params"]["routerThreshold"] == "0.45"
    # Bisection between 0.45 (below the floor) and the range's high: 0.6 on the grid.
    assert searched["explanation"].startswith("router threshold search: 0.6, between 0.45"), (
        searched["explanation"]
    )
    assert searched["outcome"] == "Promoted", searched
    quality = float(searched["metrics"]["quality_score"])
    cost = float(searched["metrics"]["cost_per_request_usd"])
    assert quality >= 0.80
    # Cheaper than the best single model at the floor (GPT-4; Mixtral misses it) by far.
    assert cost < 0.7 * float(baseline["metrics"]["cost_per_request_usd"]), (searched, baseline)
    current = _read(api, ns, "llmconfigs", "bot")["status"]["history"][-1]
    assert current["source"] == f"rollout/{searched['rollout']}"
    assert current["model"] == CHEAP and current["router"]["threshold"] == "0.6000"
    assert current["router"]["strong"]["model"] == STRONG
