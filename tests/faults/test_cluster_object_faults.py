"""Cluster objects changed under a running Rollout: the rendered ConfigMap deleted, and
the LLMConfig itself deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from tests.conftest import wait_for
from tests.faults.objects import app_deployment, create_llmconfig, create_rollout

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


def _start(custom: client.CustomObjectsApi, ns: str) -> None:
    create_llmconfig(custom, ns, "bot", {"provider": "simulator", "model": "sim-medium"})
    create_rollout(
        custom,
        ns,
        "r",
        target="bot",
        candidate={"provider": "simulator", "model": "sim-small"},
        steps=[{"setWeight": 25}, {"pause": {}}],
    )
    wait_for(lambda: _phase(custom, ns) == "Paused", 60, "the Rollout at its pause")


def _phase(custom: client.CustomObjectsApi, ns: str) -> str | None:
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "rollouts", "r"
        )
    except client.ApiException:
        return None
    return (obj.get("status") or {}).get("phase")


def _weights(core: client.CoreV1Api, ns: str) -> list[int] | None:
    try:
        cm = core.read_namespaced_config_map("bot-llm-config", ns)
    except client.ApiException:
        return None
    return [v["weight"] for v in json.loads(cm.data["variants.json"])["variants"]]


@pytest.mark.timeout(180)
def test_the_rendered_configmap_deleted_or_edited_mid_rollout_is_repaired(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    _start(custom, namespace)
    assert _weights(core, namespace) == [7500, 2500]
    core.delete_namespaced_config_map("bot-llm-config", namespace)
    wait_for(
        lambda: _weights(core, namespace) == [7500, 2500],
        60,
        "the ConfigMap back with the rollout's split",
    )
    assert _phase(custom, namespace) == "Paused"
    # Edited by hand (someone "fixes" the split): repaired the same way.
    cm = core.read_namespaced_config_map("bot-llm-config", namespace)
    doc = json.loads(cm.data["variants.json"])
    doc["variants"][0]["weight"], doc["variants"][1]["weight"] = 0, 10000
    core.patch_namespaced_config_map(
        "bot-llm-config", namespace, {"data": {"variants.json": json.dumps(doc)}}
    )
    assert _weights(core, namespace) == [0, 10000]
    wait_for(lambda: _weights(core, namespace) == [7500, 2500], 60, "the hand edit repaired")


@pytest.mark.timeout(180)
def test_the_llmconfig_deleted_mid_rollout_ends_the_rollout_cleanly(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    _start(custom, namespace)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", "bot")
    wait_for(lambda: _phase(custom, namespace) in ("Failed", "Aborted"), 60, "the Rollout ended")
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "r")
    assert "bot" in (obj["status"].get("message") or ""), obj["status"]
    wait_for(lambda: _weights(core, namespace) is None, 60, "no ConfigMap left behind")


def _with_deployment(
    api: client.ApiClient, ns: str, routing: str, steps: list[dict[str, Any]]
) -> None:
    """The app Deployment, an LLMConfig targeting it, and a Rollout routed by ``routing``."""
    client.AppsV1Api(api).create_namespaced_deployment(ns, app_deployment(ns))
    custom = client.CustomObjectsApi(api)
    create_llmconfig(
        custom,
        ns,
        "bot",
        {
            "provider": "simulator",
            "model": "sim-medium",
            "target": {"deployment": {"name": "chat"}},
        },
    )
    rollout = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "r", "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "trafficRouting": routing,
            "candidate": {"provider": "simulator", "model": "sim-small"},
            "steps": steps,
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", rollout)


def _reasons(api: client.ApiClient, ns: str) -> list[str]:
    events = client.CoreV1Api(api).list_namespaced_event(ns, field_selector="involvedObject.name=r")
    return [e.reason for e in events.items]


@pytest.mark.timeout(180)
def test_the_target_deployment_deleted_under_a_replica_split_removes_the_canary(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    """Replica split: the canary is a clone of the target Deployment. With the target gone
    the clone's pods would take all of the app's traffic, unvetted: the Rollout removes
    them and ends Failed/TargetDeleted; the stable config is unchanged. (No kubelet runs
    here: the test sets the canary's availableReplicas as the deployment controller would.)"""
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    _with_deployment(api, namespace, "replicas", [{"setWeight": 25}, {"pause": {}}])

    def canary() -> Any:
        try:
            return apps.read_namespaced_deployment("chat-canary", namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    wait_for(canary, 60, "the canary Deployment")
    apps.patch_namespaced_deployment_status(
        "chat-canary",
        namespace,
        {"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}},
    )
    wait_for(lambda: _phase(custom, namespace) == "Paused", 60, "the Rollout at its pause")
    apps.delete_namespaced_deployment("chat", namespace)
    wait_for(lambda: _phase(custom, namespace) == "Failed", 60, "the Rollout ended")
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "r")[
        "status"
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TargetDeleted" and "Deployment chat" in ready["message"], ready
    assert canary() is None
    llmc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", "bot")
    assert [h["source"] for h in llmc["status"]["history"]] == ["spec"]
    assert not llmc["status"].get("activeRollout")
    assert "TargetDeleted" in _reasons(api, namespace)


@pytest.mark.timeout(180)
def test_the_target_deployment_deleted_under_a_gateway_split_still_promotes(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    """Gateway split: the Deployment only gets the config-hash annotation at promotion.
    Deleted mid-rollout, the promotion still lands in the LLMConfig and its ConfigMap (a
    Deployment created again reads it), with a Warning Event DeploymentNotFound."""
    custom = client.CustomObjectsApi(api)
    _with_deployment(api, namespace, "configMap", [{"setWeight": 25}, {"pause": {}}])
    wait_for(lambda: _phase(custom, namespace) == "Paused", 60, "the Rollout at its pause")
    client.AppsV1Api(api).delete_namespaced_deployment("chat", namespace)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", "r", {"spec": {"promote": True}}
    )
    wait_for(lambda: _phase(custom, namespace) == "Promoted", 60, "promoted")
    llmc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", "bot")
    assert [h["source"] for h in llmc["status"]["history"]] == ["spec", "rollout/r"]
    assert "DeploymentNotFound" in _reasons(api, namespace)
