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
from tests.faults.objects import create_llmconfig, create_rollout

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
