"""Bad input: Ready=False/InvalidSpec naming the field, an Event, nothing lost, others served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.conftest import kubectl, wait_for
from tests.integration.test_operator import (
    SAMPLES,
    _apply_sample,
    _get,
    _ready,
    _wait_ready_for_generation,
)


def test_invalid_llmconfig_gets_invalidspec_while_others_are_served(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    good = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    # Passes the CRD's OpenAPI checks (a decimal string) but not the model's range.
    kubectl(
        kubeconfig,
        "patch",
        "llmc",
        "support-bot",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"parameters":{"temperature":"3.5"}}}',
    )
    bad = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot", "False")
    cond = _ready(bad)
    assert cond and cond["reason"] == "InvalidSpec"
    assert cond["message"].startswith("spec.parameters.temperature:")
    # Nothing lost: the last good version and its ConfigMap stay as they were.
    assert bad["status"]["history"] == good["status"]["history"]
    assert bad["status"]["currentHash"] == good["status"]["currentHash"]

    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=support-bot,reason=InvalidSpec"
    )
    assert any("spec.parameters.temperature" in e.message for e in events.items)

    def other(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = "other-bot"
        doc["spec"]["target"]["configMap"]["name"] = "other-bot-llm-config"

    _apply_sample(kubeconfig, namespace, "llmconfig.yaml", other)
    _wait_ready_for_generation(api, namespace, "llmconfigs", "other-bot")

    # Fixing the spec brings it back.
    kubectl(
        kubeconfig,
        "patch",
        "llmc",
        "support-bot",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"parameters":{"temperature":"0.5"}}}',
    )
    fixed = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    assert fixed["status"]["currentVersion"] == 2


def test_rollout_step_with_two_actions_is_invalid(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")

    def two_actions(doc: dict[str, Any]) -> None:
        doc["spec"]["steps"] = [{"setWeight": 10, "pause": {"duration": "1m"}}]

    _apply_sample(kubeconfig, namespace, "rollout.yaml", two_actions)
    ro = _wait_ready_for_generation(api, namespace, "rollouts", "support-bot-cooler", "False")
    cond = _ready(ro)
    assert cond and cond["reason"] == "InvalidSpec" and "spec.steps[0]" in cond["message"]


def test_policy_waits_for_its_llmconfig(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "optimizationpolicy.yaml")
    pol = _wait_ready_for_generation(api, namespace, "optimizationpolicies", "support-bot", "False")
    cond = _ready(pol)
    assert cond and cond["reason"] == "TargetNotFound" and "spec.targetRef.name" in cond["message"]
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    # The operator retries a missing target every 15 s.
    _wait_ready_for_generation(api, namespace, "optimizationpolicies", "support-bot", timeout=60)


def test_policy_with_unknown_objective_metric_is_invalid(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    doc = yaml.safe_load((SAMPLES / "optimizationpolicy.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["objectives"] = [{"metric": "happiness", "direction": "maximize"}]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    wait_for(
        lambda: (
            (_ready(_get(api, namespace, "optimizationpolicies", "support-bot")) or {}).get(
                "reason"
            )
            == "InvalidSpec"
        ),
        30,
        "InvalidSpec on the policy",
    )
    cond = _ready(_get(api, namespace, "optimizationpolicies", "support-bot"))
    assert cond and "spec.objectives[0].metric" in cond["message"]
