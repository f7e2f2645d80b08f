"""Cluster objects changed under a running Rollout: the rendered ConfigMap deleted, and
the LLMConfig itself deleted; and the ConfigMap created by another writer in a race."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from optimizer_operator.act.configmap import (
    ANNOTATION_CONFIG_HASH,
    MANAGED_BY,
    ConfigMapConflict,
    apply_configmap,
)
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


class _ReadBeforeAnotherWriter(client.CoreV1Api):
    """The real API, except that the first read of the ConfigMap is answered as it was
    just before another writer created it: that writer's create goes to the real API
    server, then the read says 404. This stands in for timing only (two processes
    cannot be made to interleave at this point on demand); every write is real."""

    def __init__(self, api: client.ApiClient, theirs: dict[str, Any]) -> None:
        super().__init__(api)
        self.theirs: dict[str, Any] | None = theirs

    def read_namespaced_config_map(self, name: str, namespace: str, **kw: Any) -> Any:
        if self.theirs is not None:
            client.CoreV1Api(self.api_client).create_namespaced_config_map(namespace, self.theirs)
            self.theirs = None
            raise client.ApiException(status=404, reason="Not Found")
        return super().read_namespaced_config_map(name, namespace, **kw)


def _desired(ns: str, owner_uid: str | None, text: str) -> dict[str, Any]:
    owners = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LLMConfig",
            "name": "bot",
            "uid": owner_uid,
            "controller": True,
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "bot-llm-config",
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {ANNOTATION_CONFIG_HASH: text},
            "ownerReferences": owners if owner_uid else [],
        },
        "data": {"variants.json": text},
    }


@pytest.mark.parametrize(
    ("theirs", "their_text", "outcome"),
    [
        ("same LLMConfig", "v1", "nothing to write"),
        ("same LLMConfig", "v0", "updated"),
        ("a person", "v1", "conflict"),
    ],
)
def test_a_configmap_created_by_another_writer_between_read_and_create_is_not_an_error(
    api: client.ApiClient,
    sole_operator: None,
    namespace: str,
    theirs: str,
    their_text: str,
    outcome: str,
) -> None:
    """Two writers of one LLMConfig (a second operator during a hand-over) both find no
    ConfigMap and both create it: the one that loses the create reads what the other
    wrote and carries on as if its read had come second — its own copy is left when it is
    the same, updated when it is older, and refused when it is not the LLMConfig's (a
    person's). The owner is a real LLMConfig (the garbage collector removes ConfigMaps
    of owners that do not exist); the session's operator is stopped so that it does not
    render that LLMConfig itself."""
    custom = client.CustomObjectsApi(api)
    create_llmconfig(custom, namespace, "bot", {"provider": "simulator", "model": "sim-medium"})
    uid = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", "bot")[
        "metadata"
    ]["uid"]
    core = _ReadBeforeAnotherWriter(
        api, _desired(namespace, uid if theirs == "same LLMConfig" else None, their_text)
    )
    mine = _desired(namespace, uid, "v1")
    if outcome == "conflict":
        with pytest.raises(ConfigMapConflict, match="not owned by this LLMConfig"):
            apply_configmap(core, mine)
    else:
        assert apply_configmap(core, mine) is (outcome == "updated")
    stored = client.CoreV1Api(api).read_namespaced_config_map("bot-llm-config", namespace)
    assert stored.data == {"variants.json": "v1" if outcome != "conflict" else their_text}
    owners = [o.uid for o in stored.metadata.owner_references or []]
    assert owners == ([uid] if outcome != "conflict" else [])
