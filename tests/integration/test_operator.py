"""The operator against a real API server: samples, status, ConfigMap, history, deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from optimizer_operator.api import GROUP, VERSION
from tests.conftest import REPO, kubectl, wait_for

SAMPLES = REPO / "config" / "samples"


def _get(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name
    )
    return obj


def _ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            return dict(cond)
    return None


def _wait_ready_for_generation(
    api: client.ApiClient,
    ns: str,
    plural: str,
    name: str,
    status: str = "True",
    timeout: float = 30,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _get(api, ns, plural, name)
        cond = _ready(obj)
        gen = obj["metadata"]["generation"]
        if (
            cond
            and cond["status"] == status
            and obj["status"].get("observedGeneration") == gen
            and cond.get("observedGeneration") == gen
        ):
            return obj
        return None

    return wait_for(check, timeout, f"{plural}/{name} Ready={status}")


def _apply_sample(kubeconfig: Path, ns: str, file: str, edit: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / file).read_text())
    doc["metadata"]["namespace"] = ns
    if edit:
        edit(doc)
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    return doc


def _cm_document(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    import json

    cm = client.CoreV1Api(api).read_namespaced_config_map(name, ns)
    doc: dict[str, Any] = json.loads(cm.data["variants.json"])
    return doc


def _wait_phase(
    api: client.ApiClient, ns: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _get(api, ns, "rollouts", name)
        return obj if obj.get("status", {}).get("phase") == phase else None

    return wait_for(check, timeout, f"rollout {name} phase {phase}")


def _fast_analysis(doc: dict[str, Any]) -> None:
    doc["spec"]["analysis"]["interval"] = "2s"  # the sample's 1m, shortened for the test


def test_each_sample_reaches_ready_with_observed_generation(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    _apply_sample(kubeconfig, namespace, "optimizationpolicy.yaml")
    llmc = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    assert _ready(llmc)["reason"] == "Rendered"  # type: ignore[index]
    assert llmc["status"]["currentVersion"] == 1
    assert llmc["status"]["configMapName"] == "support-bot-llm-config"
    pol = _wait_ready_for_generation(api, namespace, "optimizationpolicies", "support-bot")
    # The loop's first move is the warm start: the stable config as trial 0, measured on
    # its own traffic — of which this test has none, so it waits for data.
    assert pol["status"]["trialRecords"][0]["state"] == "Running"
    pol = wait_for(
        lambda: (
            p
            if (p := _get(api, namespace, "optimizationpolicies", "support-bot"))["status"]
            .get("message", "")
            .startswith("baseline trial 0: waiting for data")
            else None
        ),
        30,
        "the baseline trial waiting for data",
    )
    assert pol["status"]["state"] == "Collecting"
    doc = _cm_document(api, namespace, "support-bot-llm-config")
    assert doc["llmConfig"] == "support-bot"
    [variant] = doc["variants"]
    assert variant["role"] == "stable" and variant["weight"] == 10000
    assert variant["id"] == "v1" and variant["hash"] == llmc["status"]["currentHash"]
    assert variant["parameters"] == {"temperature": "0.7", "topP": "0.95", "maxTokens": 512}
    assert variant["endpoint"]["apiKeySecretRef"] == {
        "name": "llm-provider-keys",
        "key": "openai-api-key",
    }

    # The rollout takes its first step (10%), then holds: no traffic, so no metrics,
    # and missing data never promotes or rolls back.
    _apply_sample(kubeconfig, namespace, "rollout.yaml", _fast_analysis)
    ro = _wait_phase(api, namespace, "support-bot-cooler", "Holding")
    assert ro["status"]["canaryWeight"] == 10 and ro["status"]["currentStepIndex"] == 1
    assert ro["status"]["observedGeneration"] == ro["metadata"]["generation"]
    conditions = {c["type"]: c for c in ro["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == "MetricsUnavailable"
    # No handler results or kopf bookkeeping dumped into status.
    for obj in (llmc, pol, ro):
        assert "reconcile" not in obj["status"] and "kopf" not in obj["status"]
        assert "tick" not in obj["status"]
    doc = _cm_document(api, namespace, "support-bot-llm-config")
    assert doc["rollout"] == "support-bot-cooler"
    assert [(v["role"], v["weight"]) for v in doc["variants"]] == [
        ("stable", 9000),
        ("candidate", 1000),
    ]
    assert doc["variants"][1]["parameters"]["temperature"] == "0.3"
    llmc = _get(api, namespace, "llmconfigs", "support-bot")
    assert llmc["status"]["activeRollout"] == "support-bot-cooler"


def test_kubectl_prints_the_columns(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    _apply_sample(kubeconfig, namespace, "rollout.yaml", _fast_analysis)
    _wait_phase(api, namespace, "support-bot-cooler", "Holding")
    out = kubectl(kubeconfig, "get", "rollouts.optimizer.llmops.dev", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "TARGET", "PHASE", "STEP", "WEIGHT", "VERDICT", "AGE"]
    assert row.split()[:5] == ["support-bot-cooler", "support-bot", "Holding", "1", "10"]
    out = kubectl(kubeconfig, "get", "llmopt", "-n", namespace).stdout
    assert "llmconfig.optimizer.llmops.dev/support-bot" in out
    assert "rollout.optimizer.llmops.dev/support-bot-cooler" in out
    assert "PROVIDER" in out and "MODEL" in out and "VERSION" in out
    out = kubectl(kubeconfig, "get", "llmro,llmc", "-n", namespace).stdout
    assert "support-bot-cooler" in out and "gpt-4o-mini" in out


def test_spec_change_updates_configmap_and_adds_history(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    first = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
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
        '{"spec":{"model":"gpt-4o","parameters":{"temperature":"0.2"}}}',
    )
    second = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    assert second["status"]["currentVersion"] == 2
    assert second["status"]["currentHash"] != first["status"]["currentHash"]
    history = second["status"]["history"]
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["model"] == "gpt-4o-mini" and history[1]["model"] == "gpt-4o"
    assert history[1]["parameters"]["temperature"] == "0.2" and history[1]["source"] == "spec"
    doc = _cm_document(api, namespace, "support-bot-llm-config")
    assert doc["variants"][0]["model"] == "gpt-4o" and doc["variants"][0]["id"] == "v2"

    # A change that does not alter what runs is not a new version.
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
        '{"spec":{"historyLimit":5}}',
    )
    third = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    assert third["status"]["currentVersion"] == 2 and len(third["status"]["history"]) == 2


def test_deleting_the_llmconfig_removes_its_configmap(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot")
    core = client.CoreV1Api(api)
    assert core.read_namespaced_config_map("support-bot-llm-config", namespace)
    kubectl(kubeconfig, "delete", "llmc", "support-bot", "-n", namespace, "--wait=true")

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("support-bot-llm-config", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 30, "the garbage collector to delete the owned ConfigMap")


def test_deployment_pod_template_gets_the_config_hash(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    """No kubelet here: the Deployment never gets pods; we only check its template."""

    def with_deployment(doc: dict[str, Any]) -> None:
        doc["spec"]["target"]["deployment"] = {"name": "support-bot"}

    _apply_sample(kubeconfig, namespace, "llmconfig.yaml", with_deployment)
    missing = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot", "False")
    cond = _ready(missing)
    assert cond and cond["reason"] == "DeploymentNotFound"
    assert "spec.target.deployment.name" in cond["message"]

    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "support-bot"},
            "spec": {
                "selector": {"matchLabels": {"app": "support-bot"}},
                "template": {
                    "metadata": {"labels": {"app": "support-bot"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                },
            },
        },
    )
    ready = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot", timeout=60)
    annotations = apps.read_namespaced_deployment(
        "support-bot", namespace
    ).spec.template.metadata.annotations
    assert annotations["optimizer.llmops.dev/config-hash"] == ready["status"]["currentHash"]


def test_a_foreign_configmap_is_not_taken_over(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "support-bot-llm-config"}, "data": {"owner": "someone else"}},
    )
    _apply_sample(kubeconfig, namespace, "llmconfig.yaml")
    obj = _wait_ready_for_generation(api, namespace, "llmconfigs", "support-bot", "False")
    cond = _ready(obj)
    assert cond and cond["reason"] == "ConfigMapConflict"
    assert "spec.target.configMap.name" in cond["message"]
    assert core.read_namespaced_config_map("support-bot-llm-config", namespace).data == {
        "owner": "someone else"
    }
