"""The way back and the way forward, from the CLI against the real API server and the
session's operator: ``llm-optimizer undo`` and ``llm-optimizer accept``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.api.variants import TOTAL_WEIGHT
from tests.conftest import wait_for

pytestmark = pytest.mark.cluster

BIN = Path(sys.executable).parent


def _cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "llm-optimizer"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=60,
    )


def _get(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name
    )
    return obj


def _status(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    try:
        return dict(_get(api, ns, plural, name).get("status") or {})
    except client.ApiException:
        return {}


def _bot(ns: str, temperature: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": ns},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "parameters": {"temperature": temperature},
        },
    }


def _versions(api: client.ApiClient, ns: str) -> list[int]:
    return [h["version"] for h in _status(api, ns, "llmconfigs", "bot").get("history") or []]


def test_undo_goes_back_to_the_version_before_stable(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    ns, custom = namespace, client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", _bot(ns, "0.3"))
    wait_for(lambda: _versions(api, ns) == [1], 30, "v1")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "llmconfigs", "bot", {"spec": {"parameters": {"temperature": "0.9"}}}
    )
    wait_for(lambda: _versions(api, ns) == [1, 2], 30, "v2 from the edit")
    # Applying the v1 spec again would be a new version from spec; undo says what it is.
    bad = _cli(kubeconfig, "undo", "bot", "-n", ns, "--to-version", "7")
    assert bad.returncode == 4 and "v7 is not in status.history (kept: v1, v2)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    same = _cli(kubeconfig, "undo", "bot", "-n", ns, "--to-version", "2")
    assert same.returncode == 4 and "stable configuration already" in same.stderr
    done = _cli(kubeconfig, "undo", "bot", "-n", ns)
    assert done.returncode == 0, done.stderr
    assert "Rollout bot-undo-v1 takes" in done.stdout and "all traffic at once" in done.stdout
    rollout = _get(api, ns, "rollouts", "bot-undo-v1")
    assert "ownerReferences" not in rollout["metadata"]  # a person's: never held back
    assert rollout["metadata"]["annotations"][f"{GROUP}/requested-by"]
    wait_for(lambda: _versions(api, ns) == [1, 2, 3], 30, "v3 from the undo")
    history = _status(api, ns, "llmconfigs", "bot")["history"]
    assert history[-1]["source"] == "rollout/bot-undo-v1"
    assert history[-1]["hash"] == history[0]["hash"]  # v1's configuration again
    cm = client.CoreV1Api(api).read_namespaced_config_map("bot-llm-config", ns)
    variants = json.loads(cm.data["variants.json"])["variants"]
    assert [(v["id"], v["weight"]) for v in variants] == [("v3", TOTAL_WEIGHT)]
    # Undo again (to v2, the one before stable now): back to the person's edit.
    again = _cli(kubeconfig, "undo", "bot", "-n", ns)
    assert again.returncode == 0 and "bot-undo-v2" in again.stdout, again.stderr
    wait_for(lambda: _versions(api, ns) == [1, 2, 3, 4], 30, "v4 from the second undo")


def test_accept_rolls_out_a_recommendation_and_recommend_mode_moves_on(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    ns, custom = namespace, client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", _bot(ns, "0.3"))
    wait_for(lambda: _versions(api, ns) == [1], 30, "v1")
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationPolicy",
        "metadata": {"name": "tune", "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "mode": "recommend",
            "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
            # One point, outside the stable config: no baseline, recommended at once.
            "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"}]},
            "schedule": {"triggers": [{"type": "interval", "every": "1s"}], "cooldown": "1s"},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "optimizationpolicies", policy)

    def outcomes() -> list[str] | None:
        records = _status(api, ns, "optimizationpolicies", "tune").get("trialRecords") or []
        found = [r["outcome"] for r in records]
        return found if len(found) >= 4 else None

    # Recorded once, then told "recommended already", then the search stops as exhausted.
    seen = wait_for(outcomes, 60, "the recommendation and the repeats after it")
    assert seen[:4] == ["Recommended", "Duplicate", "Duplicate", "Duplicate"], seen
    wait_for(
        lambda: (
            "search space looks exhausted"
            in (_status(api, ns, "optimizationpolicies", "tune").get("message") or "")
        ),
        30,
        "the search to stop",
    )
    missing = _cli(kubeconfig, "accept", "tune", "-n", ns, "--trial", "99")
    assert missing.returncode == 4 and "trial 99 is not in status.trialRecords" in missing.stderr
    done = _cli(kubeconfig, "accept", "tune", "-n", ns)
    assert done.returncode == 0, done.stderr
    assert "Rollout tune-accept-t0 rolls out trial 0" in done.stdout
    rollout = _get(api, ns, "rollouts", "tune-accept-t0")
    assert rollout["spec"]["candidate"]["model"] == "sim-small"
    assert rollout["metadata"]["annotations"][f"{GROUP}/accepted-trial"] == "0"
    assert "ownerReferences" not in rollout["metadata"]
    wait_for(
        lambda: (
            _status(api, ns, "rollouts", "tune-accept-t0").get("phase")
            in ("Progressing", "Paused", "Holding")
        ),
        30,
        "the accepted Rollout to start",
    )
    twice = _cli(kubeconfig, "accept", "tune", "-n", ns)  # asked again while it runs
    assert twice.returncode == 0 and "requested before; still running" in twice.stdout
    names = [
        r["metadata"]["name"]
        for r in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "rollouts")["items"]
    ]
    assert names == ["tune-accept-t0"]
