"""The Helm chart against the real local API server.

`helm lint --strict`; `helm template` output accepted by a server-side dry run
for each way of installing; `helm install` creates what it says; then the
operator runs with a token of the chart's ServiceAccount (TokenRequest) and
passes a smoke test, and `kubectl auth can-i` shows it may do what it needs and
nothing more. No kubelet runs on the local control plane, so the chart's own
operator pod never starts: the test runs the same command, with the same
ServiceAccount's credentials, as a local process instead.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.cluster import free_port, start_operator, stop_pids, tool_path
from tests.conftest import REPO, kubectl, wait_for

CHART = REPO / "charts" / "llm-optimizer"
AUDIENCE = "https://kubernetes.default.svc.cluster.local"

VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "secured-prometheus-and-webhooks": [
        "--set", "operator.prometheusUrl=https://thanos-querier.openshift-monitoring.svc:9091",
        "--set", "operator.prometheus.tls.caSecret.name=prometheus-ca",
        "--set", "operator.prometheus.tls.clientCertSecret=prometheus-client",
        "--set", "operator.prometheus.auth.basic.username=llmopt",
        "--set", "operator.prometheus.auth.basic.passwordSecret.name=prometheus-password",
        "--set", "operator.prometheus.headers.X-Scope-OrgID=team-a",
        "--set", "batch.enabled=true", "--set", "batch.rollouts=false",
        "--set", "notifications.webhooks[0].url=https://hooks.example.com/llm",
        "--set", "notifications.webhooks[0].events={Promoted,RolledBack}",
        "--set", "notifications.webhooks[1].urlSecret.name=slack-webhook",
        "--set", "notifications.webhooks[1].format=slack",
    ],
    "namespaced": ["--set", "operator.watch.mode=namespaced"],
    "ha": ["--set", "operator.ha.enabled=true"],
    "batch-only": [
        "--set",
        "operator.enabled=false",
        "--set",
        "batch.enabled=true",
    ],
    "everything": [
        "--set",
        "operator.watch.mode=namespaced",
        "--set",
        "operator.ha.enabled=true",
        "--set",
        "batch.enabled=true",
        "--set",
        "batch.rollouts=false",
        "--set",
        "gateway.deployment.enabled=true",
        "--set",
        "gateway.deployment.configMap=bot-llm-config",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "operator.database.existingSecret=llmopt-db",
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "gateway.deployment.fallbackToStable=true",
        "--set",
        "gateway.deployment.auth.secret.name=gateway-keys",
    ],
}


def helm(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(tool_path("helm")), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def test_helm_lint_strict_passes_for_every_value_set(kubeconfig: Path) -> None:
    for name, values in VALUE_SETS.items():
        result = helm(kubeconfig, "lint", "--strict", str(CHART), *values, check=False)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_the_schema_refuses_bad_values_with_the_field(kubeconfig: Path) -> None:
    bad = {
        "operator.watch.mode=everywhere": "/operator/watch/mode",
        "operator.replicas=2": "/operator/replicas",
        "operator.prometheusUrl=prometheus:9090": "/operator/prometheusUrl",
        "operator.prometheus.timeout=0": "/operator/prometheus/timeout",
        "operator.prometheus.tls.verify=false": "/operator/prometheus/tls",
        "notifications.webhooks[0].format=teams": "/notifications/webhooks/0",
        "unknownKey=1": "unknownKey",
    }
    for setting, field in bad.items():
        result = helm(kubeconfig, "template", "x", str(CHART), "--set", setting, check=False)
        assert result.returncode != 0, setting
        assert field in result.stderr, (setting, result.stderr)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_manifests_pass_a_server_side_dry_run(
    api: client.ApiClient, kubeconfig: Path, namespace: str, crds_installed: None, value_set: str
) -> None:
    rendered = helm(
        kubeconfig,
        "template",
        "dry",
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        # As Argo CD does: render for the cluster's version (1.20 has CronJob in v1beta1).
        "--kube-version",
        client.VersionApi(api).get_code().git_version,
        *VALUE_SETS[value_set],
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert docs, "nothing rendered"
    # The peering kinds' CRDs are in the chart's crds/: apply them for real first so the
    # KopfPeering objects of the HA sets can be checked; the rest is a dry run.
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    out = kubectl(
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(rest),
    ).stdout
    assert out.count("(server dry run)") == len(rest), out


def test_the_service_monitor_renders_for_prometheus_operator(kubeconfig: Path) -> None:
    """The ServiceMonitor's CRD (prometheus-operator) is not in the local cluster, so its
    manifest is checked for shape here rather than by the API server."""
    rendered = helm(
        kubeconfig, "template", "sm", str(CHART), "--set", "serviceMonitor.enabled=true"
    ).stdout
    (sm,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


def _token_kubeconfig(api: client.ApiClient, kubeconfig: Path, ns: str, sa: str, out: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (TokenRequest)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[AUDIENCE], expiration_seconds=3600)
    )
    token = client.CoreV1Api(api).create_namespaced_service_account_token(sa, ns, request)
    admin = yaml.safe_load(kubeconfig.read_text())
    context = admin["current-context"]
    admin["users"] = [{"name": "chart-sa", "user": {"token": token.status.token}}]
    for c in admin["contexts"]:
        if c["name"] == context:
            c["context"]["user"] = "chart-sa"
            c["context"]["namespace"] = ns
    out.write_text(yaml.safe_dump(admin))
    return out


def _can(kubeconfig: Path, who: str, *args: str) -> bool:
    result = kubectl(kubeconfig, "auth", "can-i", *args, f"--as={who}", check=False)
    return result.stdout.strip() == "yes"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_install_then_the_operator_works_with_only_the_charts_rbac(
    api: client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    crds_installed: None,
    sole_operator: None,
    tmp_path: Path,
    mode: str,
) -> None:
    release = f"c{uuid.uuid4().hex[:6]}"
    helm(
        kubeconfig,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"operator.watch.mode={mode}",
        "--set",
        "operator.prometheusUrl=http://127.0.0.1:1",
    )
    try:
        _check_installed(api, kubeconfig, namespace, release, tmp_path, mode)
    finally:
        helm(kubeconfig, "uninstall", release, "--namespace", namespace)


def _check_installed(
    api: client.ApiClient, kubeconfig: Path, ns: str, release: str, tmp_path: Path, mode: str
) -> None:
    full = f"{release}-llm-optimizer"
    apps = client.AppsV1Api(api)
    deploy = apps.read_namespaced_deployment(full, ns)
    assert deploy.spec.strategy.type == "Recreate" and deploy.spec.replicas == 1
    pod = deploy.spec.template.spec
    sec = pod.containers[0].security_context
    assert pod.security_context.run_as_non_root and sec.read_only_root_filesystem
    assert sec.capabilities.drop == ["ALL"] and not sec.allow_privilege_escalation
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.containers[0].args[:3] == [
        "operator",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
    ]
    assert (f"--namespace={ns}" in pod.containers[0].args) == (mode == "namespaced")
    client.CoreV1Api(api).read_namespaced_service(full, ns)
    rbac = client.RbacAuthorizationV1Api(api)
    if mode == "namespaced":
        rbac.read_namespaced_role(f"{full}-operator", ns)
    else:
        rbac.read_cluster_role(f"{full}-operator")
    viewer = rbac.read_cluster_role(f"{full}-viewer")
    assert viewer.metadata.labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"

    # What the ServiceAccount may do, and what it may not.
    sa = f"system:serviceaccount:{ns}:{full}"
    elsewhere = _can(kubeconfig, sa, "list", "llmconfigs.optimizer.llmops.dev", "-n", "default")
    assert elsewhere == (mode == "cluster")
    assert _can(kubeconfig, sa, "list", "namespaces") == (mode == "cluster")  # kopf scanning
    allowed = [
        ("patch", "llmconfigs.optimizer.llmops.dev"),
        ("patch", "rollouts.optimizer.llmops.dev/status"),
        ("create", "rollouts.optimizer.llmops.dev"),
        ("watch", "optimizationpolicies.optimizer.llmops.dev"),
        ("create", "configmaps"),
        ("delete", "configmaps"),
        ("patch", "deployments.apps"),
        ("create", "events"),
    ]
    for verb, resource in allowed:
        assert _can(kubeconfig, sa, verb, resource, "-n", ns), (verb, resource)
    denied = [
        ("delete", "llmconfigs.optimizer.llmops.dev", ns),
        ("delete", "rollouts.optimizer.llmops.dev", ns),
        ("get", "secrets", ns),
        ("list", "pods", ns),
        ("list", "deployments.apps", "default"),
        ("create", "clusterroles.rbac.authorization.k8s.io", ns),
        ("create", "serviceaccounts/token", ns),
    ]
    for verb, resource, where in denied:
        assert not _can(kubeconfig, sa, verb, resource, "-n", where), (verb, resource, where)
    if mode == "cluster":
        _operator_smoke(api, kubeconfig, ns, full, tmp_path, [])
        return
    # People: the built-in view role now includes our kinds (aggregation); the approver
    # may patch Rollouts but not delete them or touch LLMConfigs.
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "viewers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "User", "name": "vera", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "approvers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{full}-approver",
            },
            "subjects": [{"kind": "User", "name": "abe", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    wait_for(
        lambda: _can(kubeconfig, "vera", "list", "rollouts.optimizer.llmops.dev", "-n", ns),
        what="the view role to aggregate the viewer rules",
    )
    assert not _can(kubeconfig, "vera", "patch", "rollouts.optimizer.llmops.dev", "-n", ns)
    assert _can(kubeconfig, "abe", "patch", "rollouts.optimizer.llmops.dev", "-n", ns)
    assert not _can(kubeconfig, "abe", "delete", "rollouts.optimizer.llmops.dev", "-n", ns)
    assert not _can(kubeconfig, "abe", "patch", "llmconfigs.optimizer.llmops.dev", "-n", ns)

    _operator_smoke(api, kubeconfig, ns, full, tmp_path, ["--namespace", ns])


def _operator_smoke(
    api: client.ApiClient, kubeconfig: Path, ns: str, sa: str, tmp_path: Path, args: list[str]
) -> None:
    """The operator with nothing but the ServiceAccount's token."""
    sa_config = _token_kubeconfig(api, kubeconfig, ns, sa, tmp_path / "sa-kubeconfig")
    port = free_port()
    log = tmp_path / "operator.log"
    proc, _ = start_operator(
        sa_config,
        log,
        extra_args=[*args, "--metrics-port", str(port)],
        env={"LLMOPT_ROLLOUT_TICK": "1", "LLMOPT_POLICY_TICK": "1"},
    )
    try:
        _smoke(api, kubeconfig, ns, port)
    finally:
        stop_pids([proc.pid])
    text = log.read_text()
    assert "Forbidden" not in text and " 403" not in text, text[-3000:]


def _smoke(api: client.ApiClient, kubeconfig: Path, ns: str, port: int) -> None:
    custom = client.CustomObjectsApi(api)
    llmc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": ns},
        "spec": {"provider": "simulator", "model": "sim-medium", "parameters": {"maxTokens": 256}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", llmc)

    def ready() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", "bot")
        conds = (obj.get("status") or {}).get("conditions") or []
        return obj if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else None

    wait_for(ready, timeout=60, what="LLMConfig Ready under the chart's RBAC")
    cm = client.CoreV1Api(api).read_namespaced_config_map("bot-llm-config", ns)
    assert json.loads(cm.data["variants.json"])["variants"][0]["model"] == "sim-medium"
    # A Rollout without analysis walks its steps and promotes: ConfigMap weights, the
    # Rollout's and the LLMConfig's status, and Events, all with the chart's RBAC.
    rollout = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "cooler", "namespace": ns},
        "spec": {
            "targetRef": {"name": "bot"},
            "candidate": {
                "provider": "simulator",
                "model": "sim-medium",
                "parameters": {"maxTokens": 256, "temperature": "0.3"},
            },
            "steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 60}],
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", rollout)

    def promoted() -> bool:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", "cooler")
        return (obj.get("status") or {}).get("phase") == "Promoted"

    wait_for(promoted, timeout=60, what="the Rollout promoted under the chart's RBAC")
    events = client.CoreV1Api(api).list_namespaced_event(ns).items
    assert any(e.involved_object.name == "cooler" for e in events)
    # The operator's own metrics and health, with the same credentials.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'llmopt_operator_rollouts_finished_total{outcome="Promoted"} 1.0' in metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
        health = json.loads(r.read())
    assert health["dependencies"]["apiServer"] == "ok"
    assert health["dependencies"]["prometheus"] == "not configured (analysis steps hold)"


def test_decoded_token_is_for_the_api_audience(api: client.ApiClient, namespace: str) -> None:
    """TokenRequest works on the local control plane (what the install test relies on)."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "probe"}})
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[AUDIENCE], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token("probe", namespace, request).status.token
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == [AUDIENCE]
    assert claims["sub"] == f"system:serviceaccount:{namespace}:probe"
