"""`llm-optimizer get|describe|history|recommendations|export-study` and the kubectl
plugin against the real API server. No operator runs here (the session's is paused):
the objects' status is written as the operator writes it, so the test knows every
value the tables must show."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from tests.conftest import kubectl

POLICY_STATUS: dict[str, Any] = {
    "state": "Monitoring",
    "message": "not stable: Rollout tune-t2 is active on the LLMConfig",
    "lastDecision": "trial 2: Rollout tune-t2 for sim-medium",
    "trialRecords": [
        {
            "number": 0, "params": {"model": "simulator/sim-large", "temperature": "0.3"},
            "hash": "h0", "state": "Complete", "outcome": "Baseline",
            "values": ["0.0042", "0.90"], "constraints": {"minQuality": "-0.1"},
            "metrics": {"cost_per_request_usd": "0.0042", "quality_score": "0.90"},
        },
        {
            "number": 1, "params": {"model": "simulator/sim-small", "temperature": "0.3"},
            "hash": "h1", "state": "Complete", "outcome": "RolledBack", "rollout": "tune-t1",
            "reason": "critical rollback trigger", "values": ["0.00007", "0.70"],
            "constraints": {"minQuality": "0.1"},
            "metrics": {"cost_per_request_usd": "0.00007", "quality_score": "0.70"},
        },
    ],
    "recommendation": {
        "number": 3, "params": {"model": "simulator/sim-medium", "temperature": "0.2"},
        "hash": "h3", "state": "Running", "outcome": "Recommended", "reason": "mode recommend",
    },
}  # fmt: skip


def _cli(kubeconfig: Path, *args: str, plugin: bool = False) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from optimizer_operator.cli.main import kubectl_plugin; "
        "sys.argv = ['kubectl-llmopt', *sys.argv[1:]]; sys.exit(kubectl_plugin())"
    )
    cmd = [sys.executable, "-c", code] if plugin else [sys.executable, "-m", "optimizer_operator"]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


def _setup(api: client.ApiClient, kubeconfig: Path, ns: str) -> None:
    custom = client.CustomObjectsApi(api)
    docs = [
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
            "metadata": {"name": "bot", "namespace": ns},
            "spec": {"provider": "simulator", "model": "sim-large",
                     "parameters": {"temperature": "0.3"}},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "OptimizationPolicy",
            "metadata": {"name": "tune", "namespace": ns},
            "spec": {
                "targetRef": {"name": "bot"},
                "objectives": [
                    {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.7"},
                    {"metric": "quality_score", "direction": "maximize", "weight": "0.3"},
                ],
                "constraints": {"minQuality": "0.8"},
                "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"},
                                           {"provider": "simulator", "model": "sim-large"}]},
            },
        },
    ]  # fmt: skip
    for doc in docs:
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(doc))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "optimizationpolicies", "tune", {"status": POLICY_STATUS}
    )
    history = [
        {"version": 1, "hash": "a", "provider": "simulator", "model": "sim-large",
         "parameters": {"temperature": "0.3"}, "source": "spec",
         "appliedAt": "2026-11-25T07:00:00Z"},
        {"version": 2, "hash": "b", "provider": "simulator", "model": "sim-medium",
         "parameters": {"temperature": "0.3"}, "source": "rollout/tune-t2",
         "appliedAt": "2026-11-25T07:10:00Z"},
    ]  # fmt: skip
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "llmconfigs", "bot",
        {"status": {"currentVersion": 2, "history": history, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Applied", "message": "",
             "lastTransitionTime": "2026-11-25T07:10:00Z"}]}},
    )  # fmt: skip


def test_tables_descriptions_history_recommendations_and_export(
    api: client.ApiClient, kubeconfig: Path, namespace: str, crds_installed: None,
    sole_operator: None,
) -> None:  # fmt: skip
    _setup(api, kubeconfig, namespace)
    ns = ["-n", namespace]

    out = _cli(kubeconfig, "get", "policies", *ns)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split()[:6] == ["NAME", "TARGET", "MODE", "STATE", "TRIALS", "BEST"]
    assert row.split()[:5] == ["tune", "bot", "auto", "Monitoring", "2"]

    every = _cli(kubeconfig, "get", "configs", "-A")
    line = next(ln for ln in every.stdout.splitlines() if ln.startswith(namespace))
    assert line.split()[1:5] == ["bot", "simulator/sim-medium", "2", "-"]

    as_json = json.loads(_cli(kubeconfig, "get", "policies", *ns, "-o", "json").stdout)
    assert [p["metadata"]["name"] for p in as_json] == ["tune"]

    described = _cli(kubeconfig, "describe", "policy", "tune", *ns).stdout
    assert "minimize cost_per_request_usd (weight 0.7)" in described
    assert "Now:          not stable: Rollout tune-t2 is active" in described
    assert "sim-small temperature=0.3" in described and "RolledBack" in described

    history = _cli(kubeconfig, "history", "bot", *ns).stdout.splitlines()
    assert history[2].split()[:2] == ["1", "simulator/sim-large"]
    assert history[3].split()[3] == "rollout/tune-t2"

    recs = _cli(kubeconfig, "recommendations", *ns).stdout
    assert recs.strip() == "tune: sim-medium temperature=0.2 — mode recommend"

    exported = _cli(kubeconfig, "export-study", "tune", *ns).stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["number"] for r in rows] == ["0", "1"]
    assert rows[1]["params_model"] == "simulator/sim-small"
    assert rows[1]["values_quality_score"] == "0.70"
    assert rows[1]["constraints_minQuality"] == "0.1"

    # The kubectl plugin: the same commands, and rollout actions as before.
    plugin = _cli(kubeconfig, "get", "policies", *ns, plugin=True)
    assert plugin.returncode == 0 and "Monitoring" in plugin.stdout
    missing = _cli(kubeconfig, "abort", "nope", *ns, plugin=True)
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_exit_codes_say_what_went_wrong(
    kubeconfig: Path, namespace: str, crds_installed: None, tmp_path: Path
) -> None:
    missing = _cli(kubeconfig, "describe", "rollout", "nope", "-n", namespace)
    assert missing.returncode == 3
    assert missing.stderr.strip() == f"error: rollouts {namespace}/nope: not found"
    unreachable = tmp_path / "kubeconfig"
    text = kubeconfig.read_text()
    port = text.split("server: https://127.0.0.1:")[1].split("\n")[0]
    unreachable.write_text(text.replace(f"127.0.0.1:{port}", "127.0.0.1:9"))
    down = _cli(unreachable, "get", "policies")
    assert down.returncode == 2 and down.stderr.startswith("error: cannot reach the cluster")
    usage = _cli(kubeconfig, "get", "pods")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
