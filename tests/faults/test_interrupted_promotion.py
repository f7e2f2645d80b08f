"""A promotion cut in half: the tick that promotes writes the LLMConfig's new stable
version, then loses its connection before the ConfigMap and the Rollout's own status are
written (what a reset through the API server's proxy did in the resets test). The next
tick must finish that promotion, not judge the now-stable candidate a second time.

The reconcile runs in this process against the real API server, with the session's
operator stopped (``sole_operator``) so that the two ticks are the only actors; the fault
is one ConfigMap patch that raises the error urllib3 raises on a reset connection."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.reconcile.llmconfig import reconcile_llmconfig
from optimizer_operator.reconcile.rollout import reconcile_rollout
from tests.faults.objects import create_llmconfig, create_rollout

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


class _ResetOnPatch(client.CoreV1Api):
    """The real CoreV1Api whose next ConfigMap patch fails as a reset connection does."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.failures = 0

    def patch_namespaced_config_map(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures == 0:
            self.failures += 1
            raise urllib3.exceptions.ProtocolError(
                "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
            )
        return super().patch_namespaced_config_map(*args, **kwargs)


def _get(custom: client.CustomObjectsApi, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    return obj


def test_a_promotion_interrupted_after_the_llmconfig_took_it_is_finished_once(
    api: client.ApiClient, crds_installed: None, sole_operator: None, namespace: str
) -> None:
    custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    create_llmconfig(custom, namespace, "bot", {"provider": "simulator", "model": "sim-medium"})
    outcome = reconcile_llmconfig(
        _get(custom, namespace, "llmconfigs", "bot"), core=core, apps=apps, custom=custom
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "llmconfigs", "bot", {"status": outcome.status}
    )
    create_rollout(
        custom,
        namespace,
        "r",
        target="bot",
        candidate={"provider": "simulator", "model": "sim-small"},
        steps=[{"setWeight": 30}, {"pause": {}}],
    )
    # Tick 1: the rollout starts and stands at its pause (its status written as kopf would).
    first = reconcile_rollout(
        _get(custom, namespace, "rollouts", "r"), core=core, apps=apps, custom=custom, source=None
    )
    assert first.status["phase"] == "Paused"
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "rollouts", "r", {"status": first.status}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", "r", {"spec": {"promote": True}}
    )
    # Tick 2: a person promoted; the LLMConfig takes v2, then the connection resets.
    flaky = _ResetOnPatch(api)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        reconcile_rollout(
            _get(custom, namespace, "rollouts", "r"),
            core=flaky,
            apps=apps,
            custom=custom,
            source=None,
        )
    assert flaky.failures == 1
    assert _get(custom, namespace, "rollouts", "r")["status"]["phase"] == "Paused"  # not written
    history = _get(custom, namespace, "llmconfigs", "bot")["status"]["history"]
    assert [h["source"] for h in history] == ["spec", "rollout/r"]
    # Tick 3: the same Rollout status as before the cut.
    third = reconcile_rollout(
        _get(custom, namespace, "rollouts", "r"), core=core, apps=apps, custom=custom, source=None
    )
    assert third.status["phase"] == "Promoted", third.status["message"]
    assert "PromotionCompleted" in [reason for _, reason, _ in third.events]
    llmc = _get(custom, namespace, "llmconfigs", "bot")["status"]
    assert [h["source"] for h in llmc["history"]] == ["spec", "rollout/r"]  # once, not twice
    assert llmc["currentVersion"] == 2 and not llmc.get("activeRollout")
    cm = core.read_namespaced_config_map("bot-llm-config", namespace)
    assert cm.metadata.annotations[f"{GROUP}/config-hash"] == history[-1]["hash"]
    assert [v["weight"] for v in _variants(cm)] == [10000]  # basis points: the split is gone


def _variants(cm: client.V1ConfigMap) -> list[dict[str, Any]]:
    variants: list[dict[str, Any]] = json.loads(cm.data["variants.json"])["variants"]
    return variants
