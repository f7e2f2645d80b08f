"""Rollouts decided on pairwise judging against stable, end to end, as a new user on a
real provider would run them: the LLMConfig uses the ``openai`` provider against an
OpenAI-compatible server that returns no ground truth (the project's simulator in its
plain mode), through the real gateway (evaluator ``pairwise``), Prometheus and operator.
The judge is the same server's judge model ``sim-judge`` — the project's stand-in for a
judge model, whose verdicts follow the hidden quality of the answers it served (noise
0.1, no position bias); no real judge model can run here.

A worse candidate is rolled back on win_rate; one that is not worse is promoted on it
(win_rate confidently at least 0.4: not worse than stable by more than 0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.prometheus import LocalPrometheus
from tests.integration.test_canary_e2e import _apply, _until_terminal, traffic
from tests.integration.test_quality_signal import _get, _openai, _until, plain_upstream

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
) -> dict[str, Any]:
    async with plain_upstream() as upstream:
        stable = _openai("sim-medium", upstream)
        stable["parameters"] = {"temperature": "0.3", "maxTokens": 512}
        _apply(kubeconfig, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
            "metadata": {"name": "bot", "namespace": namespace}, "spec": stable,
        })  # fmt: skip
        await _until(
            lambda: (_get(api, namespace, "llmconfigs", "bot").get("status") or {}).get(
                "history"
            ),
            60,
            "the LLMConfig's first version",
        )
        async with traffic(
            kubeconfig, namespace, prometheus, monkeypatch, evaluators=_judged_by(upstream)
        ):
            _apply(kubeconfig, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
                "metadata": {"name": "judged", "namespace": namespace},
                "spec": {"targetRef": {"name": "bot"},
                         "candidate": {**_openai(candidate["model"], upstream),
                                       "parameters": candidate["parameters"]},
                         "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
                         "analysis": ANALYSIS, "progressDeadline": "5m"},
            })  # fmt: skip
            return await _until_terminal(api, namespace, "judged", timeout=200)


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
async def test_a_candidate_not_worse_is_promoted_on_its_win_rate(
    api: client.ApiClient,
    kubeconfig: Path,
    operator: Path,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same model at a slightly different temperature: about as good (win rate ~0.5).
    ro = await _run(api, kubeconfig, namespace, prometheus, monkeypatch,
                    {"model": "sim-medium",
                     "parameters": {"temperature": "0.35", "maxTokens": 512}})  # fmt: skip
    assert ro["status"]["phase"] == "Promoted", ro["status"]
    verdicts = {r["metric"]: r["verdict"] for r in ro["status"]["results"]}
    assert verdicts.get("win_rate_threshold") == "Pass", ro["status"]["results"]
    history = _get(api, namespace, "llmconfigs", "bot")["status"]["history"]
    assert [h["version"] for h in history] == [1, 2]
