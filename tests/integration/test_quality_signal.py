"""A new user on a real provider with no quality evaluator: the LLMConfig uses the
``openai`` provider against an OpenAI-compatible server that returns no ground truth
(the project's simulator in its plain mode, as any provider answers), through the real
gateway, Prometheus and operator. The Rollout's analysis judges quality_score and gets
none: within the bound (two windows) the Rollout says so — QualitySignal=False, reason
NoQualityData, a message naming what to configure, an Event — and nothing is promoted.
The policy judged on quality_score says the same and runs no trial."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.api.timestamps import parse_ts
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.providers.serve import build_app
from optimizer_operator.providers.simulator import Fleet, SimulatorProvider, load_fleet
from tests.gateway.conftest import serve
from tests.integration.test_canary_e2e import _apply, traffic

WINDOW_S = 6  # the analysis window: the signal must turn False within two of them


@contextlib.asynccontextmanager
async def plain_upstream(fleet: Fleet | None = None) -> AsyncIterator[str]:
    """The project's simulator (``fleet``, else its default one) as a plain
    OpenAI-compatible server (no ground truth in any answer); yields its base URL for
    ``endpoint.baseUrl``."""
    upstream, base = await serve(
        build_app(SimulatorProvider(fleet or load_fleet(None), time_scale=0.02), plain=True)
    )
    try:
        yield base + "/v1"
    finally:
        await upstream.cleanup()


def _openai(model: str, base_url: str) -> dict[str, Any]:
    return {"provider": "openai", "model": model, "endpoint": {"baseUrl": base_url}}


async def apply_bot(
    api: client.ApiClient, kubeconfig: Path, namespace: str, spec: dict[str, Any]
) -> None:
    """The LLMConfig ``bot`` with ``spec``, once it has its first version."""
    _apply(kubeconfig, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": namespace}, "spec": spec,
    })  # fmt: skip
    await _until(
        lambda: (_get(api, namespace, "llmconfigs", "bot").get("status") or {}).get("history"),
        60,
        "the LLMConfig's first version",
    )


def _get(api: client.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return obj


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.timeout(240)
async def test_no_quality_evaluator_is_told_within_two_windows_and_nothing_is_promoted(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    analysis = {"interval": "2s", "window": f"{WINDOW_S}s", "minSampleSize": 20,
                "inconclusiveLimit": 100}  # fmt: skip
    # The gateway (its default evaluators: ground truth only, which a plain server never
    # sends) serves `bot` from its ConfigMap under load, scraped by Prometheus.
    async with (
        plain_upstream() as upstream,
        traffic(kubeconfig, namespace, prometheus, monkeypatch),
    ):
        await apply_bot(api, kubeconfig, namespace, _openai("sim-medium", upstream))
        _apply(kubeconfig, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
            "metadata": {"name": "cheaper", "namespace": namespace},
            "spec": {"targetRef": {"name": "bot"},
                     "candidate": _openai("sim-small", upstream),
                     "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                     "analysis": analysis, "progressDeadline": "10m"},
        })  # fmt: skip

        def told() -> dict[str, Any] | None:
            ro = _get(api, namespace, "rollouts", "cheaper")
            c = _condition(ro, "QualitySignal")
            return ro if c and c["status"] == "False" else None

        rollout = await _until(told, 120, "the Rollout's QualitySignal=False")
        # The policy next (it waits while a Rollout holds the LLMConfig): end this one.
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", "cheaper", {"spec": {"abort": True}}
        )
        await _until(
            lambda: _get(api, namespace, "rollouts", "cheaper")["status"].get("phase")
            == "Aborted",
            60,
            "the Rollout aborted",
        )
        _apply(kubeconfig, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "OptimizationPolicy",
            "metadata": {"name": "tune", "namespace": namespace},
            "spec": {
                "targetRef": {"name": "bot"}, "mode": "auto",
                "objectives": [{"metric": "quality_score", "direction": "maximize"}],
                "searchSpace": {"models": [{"provider": "openai", "model": "sim-medium"},
                                           {"provider": "openai", "model": "sim-small"}]},
                "rolloutTemplate": {"analysis": analysis},
                "schedule": {"triggers": [{"type": "interval", "every": "5s"}]},
            },
        })  # fmt: skip
        policy = await _until(
            lambda: (lambda p: p if (_condition(p, "QualitySignal") or {}).get("status")
                     == "False" else None)(_get(api, namespace, "optimizationpolicies", "tune")),
            120,
            "the policy's QualitySignal=False",
        )  # fmt: skip
    condition = _condition(rollout, "QualitySignal")
    assert condition is not None and condition["reason"] == "NoQualityData"
    assert "configure a quality evaluator" in condition["message"]
    # Told at the bound: two windows after the first measurement without scores (the
    # flip comes with the next measurement past it; a loaded machine may add a few).
    since = parse_ts(rollout["status"]["qualitySignal"]["since"])
    flipped = parse_ts(condition["lastTransitionTime"])
    assert 2 * WINDOW_S <= (flipped - since).total_seconds() <= 2 * WINDOW_S + 20
    assert rollout["status"]["phase"] != "Promoted"
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=cheaper"
    )
    assert "NoQualityData" in {e.reason for e in events.items}
    llmc = _get(api, namespace, "llmconfigs", "bot")
    assert [h["version"] for h in llmc["status"]["history"]] == [1]  # nothing promoted
    pc = _condition(policy, "QualitySignal")
    assert pc is not None and pc["reason"] == "NoQualityData"
    records = policy["status"]["trialRecords"]
    assert [(r["number"], r["outcome"]) for r in records] == [(0, "NoQualityData")]
    assert not any(r.get("rollout") for r in records)  # no trial ran without quality
