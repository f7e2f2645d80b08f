"""Manual control: pause, resume, abort and promote, through the CLI and the kubectl plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.localcluster import tool_path
from tests.conftest import kubectl, wait_for

BIN = Path(sys.executable).parent


def _cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "llm-optimizer"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=60,
    )


def _plugin(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Through kubectl itself, which finds kubectl-llmopt on PATH."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(tool_path("kubectl")), "llmopt", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _setup(kubeconfig: Path, namespace: str, name: str) -> None:
    docs = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LLMConfig",
            "metadata": {"name": "bot", "namespace": namespace},
            "spec": {"provider": "simulator", "model": "sim-medium"},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "targetRef": {"name": "bot"},
                "candidate": {"provider": "simulator", "model": "sim-small"},
                "steps": [{"setWeight": 20}, {"pause": {}}],
            },
        },
    ]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def _status(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "rollouts", name
    )
    return dict(obj.get("status") or {})


def _weights(api: client.ApiClient, ns: str) -> list[int]:
    cm = client.CoreV1Api(api).read_namespaced_config_map("bot-llm-config", ns)
    return [v["weight"] for v in json.loads(cm.data["variants.json"])["variants"]]


def test_pause_resume_and_abort_through_the_cli(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _setup(kubeconfig, namespace, "manual")
    wait_for(
        lambda: _status(api, namespace, "manual").get("phase") == "Paused", 30, "the pause step"
    )
    assert _weights(api, namespace) == [8000, 2000]
    out = _cli(kubeconfig, "rollout", "pause", "manual", "-n", namespace)
    assert out.returncode == 0 and "pause requested" in out.stdout
    wait_for(
        lambda: any(
            c["reason"] == "PausedBySpec"
            for c in _status(api, namespace, "manual").get("conditions", [])
        ),
        30,
        "PausedBySpec",
    )
    assert _cli(kubeconfig, "rollout", "resume", "manual", "-n", namespace).returncode == 0
    out = _cli(kubeconfig, "rollout", "abort", "manual", "-n", namespace)
    assert out.returncode == 0
    wait_for(lambda: _status(api, namespace, "manual").get("phase") == "Aborted", 30, "Aborted")
    assert _weights(api, namespace) == [10000]
    assert "aborted by spec.abort" in _status(api, namespace, "manual")["message"]
    missing = _cli(kubeconfig, "rollout", "abort", "nope", "-n", namespace)
    assert missing.returncode == 3 and missing.stderr.strip() == (
        f"error: rollout {namespace}/nope: not found"
    )


def test_promote_through_the_kubectl_plugin(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _setup(kubeconfig, namespace, "waiting")
    wait_for(
        lambda: _status(api, namespace, "waiting").get("phase") == "Paused", 30, "the pause step"
    )
    out = _plugin(kubeconfig, "promote", "waiting", "-n", namespace)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: _status(api, namespace, "waiting").get("phase") == "Promoted", 30, "Promoted")
    assert _weights(api, namespace) == [10000]
    llmc = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "llmconfigs", "bot"
    )
    assert llmc["status"]["history"][-1]["model"] == "sim-small"
    status = _plugin(kubeconfig, "status", "waiting", "-n", namespace, "-o", "json")
    assert json.loads(status.stdout)["status"]["phase"] == "Promoted"


def test_operator_killed_mid_rollout_resumes_at_the_right_step(
    api: client.ApiClient, kubeconfig: Path, operator_process: Any, namespace: str
) -> None:
    docs = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LLMConfig",
            "metadata": {"name": "bot", "namespace": namespace},
            "spec": {"provider": "simulator", "model": "sim-medium"},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollout",
            "metadata": {"name": "survivor", "namespace": namespace},
            "spec": {
                "targetRef": {"name": "bot"},
                "candidate": {"provider": "simulator", "model": "sim-small"},
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "8s"}},
                    {"setWeight": 40},
                    {"pause": {}},
                ],
            },
        },
    ]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    wait_for(
        lambda: _status(api, namespace, "survivor").get("currentStepIndex") == 1,
        30,
        "the timed pause",
    )
    operator_process.kill()
    assert _status(api, namespace, "survivor")["canaryWeight"] == 20
    operator_process.start()
    wait_for(
        lambda: _status(api, namespace, "survivor").get("currentStepIndex") == 3,
        60,
        "the second weight step after the restart",
    )
    status = _status(api, namespace, "survivor")
    assert status["phase"] == "Paused" and status["canaryWeight"] == 40
    assert _weights(api, namespace) == [6000, 4000]
    events = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=survivor")
        .items
    )
    counts: dict[str, int] = {}
    for e in events:
        key = f"{e.reason}: {e.message}"
        counts[key] = counts.get(key, 0) + (e.count or 1)
    # Each transition happened once: the restart repeated no step.
    assert counts["Started: rollout started with 4 steps"] == 1
    assert counts["WeightSet: step 0: candidate weight 20%"] == 1
    assert counts["WeightSet: step 2: candidate weight 40%"] == 1


def test_a_spec_change_is_delivered_by_canary_when_asked(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    llmc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": namespace},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "delivery": {"strategy": "canary", "steps": [{"setWeight": 50}, {"pause": {}}]},
        },
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(llmc))
    custom = client.CustomObjectsApi(api)

    def llmc_status() -> dict[str, Any]:
        return dict(
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", "bot").get(
                "status"
            )
            or {}
        )

    wait_for(lambda: llmc_status().get("currentVersion") == 1, 30, "v1")
    # A person edits the spec (as kubectl, Argo CD or Flux would).
    kubectl(
        kubeconfig,
        "patch",
        "llmc",
        "bot",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"model":"sim-small"}}',
    )
    name = wait_for(lambda: llmc_status().get("deliveringRollout"), 30, "a delivery rollout")
    rollout = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", name)
    assert rollout["spec"]["candidate"]["model"] == "sim-small"
    assert rollout["metadata"]["ownerReferences"][0]["kind"] == "LLMConfig"
    wait_for(lambda: _status(api, namespace, name).get("phase") == "Paused", 30, "paused at 50%")
    assert _weights(api, namespace) == [5000, 5000]
    assert llmc_status()["currentVersion"] == 1  # stable until the rollout promotes it
    assert _cli(kubeconfig, "rollout", "promote", name, "-n", namespace).returncode == 0
    wait_for(lambda: llmc_status().get("currentVersion") == 2, 30, "v2 after promotion")
    history = llmc_status()["history"]
    assert history[-1]["model"] == "sim-small" and history[-1]["source"] == f"rollout/{name}"
    assert _weights(api, namespace) == [10000]
    rollouts = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts")
    assert len(rollouts["items"]) == 1  # one rollout per change, never repeated


def test_strategies_not_built_yet_are_refused_without_moving_traffic(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    _setup(kubeconfig, namespace, "bg")
    wait_for(lambda: _status(api, namespace, "bg").get("phase") == "Paused", 30, "canary runs")
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "blue", "namespace": namespace},
        "spec": {
            "targetRef": {"name": "bot"},
            "strategy": "blueGreen",
            "candidate": {"provider": "simulator", "model": "sim-large"},
        },
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(doc))

    def refused() -> dict[str, Any] | None:
        ready = [
            c for c in _status(api, namespace, "blue").get("conditions", []) if c["type"] == "Ready"
        ]
        return ready[0] if ready and ready[0]["status"] == "False" else None

    cond = wait_for(refused, 30, "Ready=False on the blueGreen rollout")
    assert cond["reason"] == "NotSupported" and cond["message"].startswith("spec.strategy:")
    assert _weights(api, namespace) == [8000, 2000]  # only the canary rollout's split
