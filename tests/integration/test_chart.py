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

import asyncio
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
        "--set",
        "operator.prometheusUrl=https://thanos-querier.openshift-monitoring.svc:9091",
        "--set",
        "operator.prometheus.tls.caSecret.name=prometheus-ca",
        "--set",
        "operator.prometheus.tls.clientCertSecret=prometheus-client",
        "--set",
        "operator.prometheus.auth.basic.username=llmopt",
        "--set",
        "operator.prometheus.auth.basic.passwordSecret.name=prometheus-password",
        "--set",
        "operator.prometheus.headers.X-Scope-OrgID=team-a",
        "--set",
        "batch.enabled=true",
        "--set",
        "batch.rollouts=false",
        "--set",
        "notifications.webhooks[0].url=https://hooks.example.com/llm",
        "--set",
        "notifications.webhooks[0].events={Promoted,RolledBack}",
        "--set",
        "notifications.webhooks[1].urlSecret.name=slack-webhook",
        "--set",
        "notifications.webhooks[1].format=slack",
    ],
    "namespaced": ["--set", "operator.watch.mode=namespaced"],
    "recordings": [
        "--set", "recordings.existingClaim=llm-recordings",
        "--set", "recordings.redaction=none",
        "--set", "gateway.deployment.enabled=true",
        "--set", "gateway.deployment.configMap=bot-llm-config",
    ],
    # OpenShift's restricted-v2 SCC assigns user and group per namespace: unset ours.
    "openshift": [
        "--set",
        "podSecurityContext.runAsUser=null",
        "--set",
        "podSecurityContext.runAsGroup=null",
        "--set",
        "podSecurityContext.fsGroup=null",
        "--set",
        "nameOverride=llmo",
    ],
    "names-placement-and-extras": [
        "--set",
        "fullnameOverride=optimizer",
        "--set",
        "imagePullSecrets[0].name=registry",
        "--set",
        "operator.tolerations[0].key=dedicated",
        "--set",
        "operator.tolerations[0].operator=Exists",
        "--set",
        "operator.topologySpreadConstraints[0].maxSkew=1",
        "--set",
        "operator.topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "--set",
        "operator.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "--set",
        "operator.extraArgs[0]=--log-level=warning",
        "--set",
        "operator.logFormat=json",
        "--set",
        "operator.extraVolumes[0].name=scratch",
        "--set",
        "operator.extraVolumes[0].emptyDir.medium=Memory",
        "--set",
        "operator.extraVolumeMounts[0].name=scratch",
        "--set",
        "operator.extraVolumeMounts[0].mountPath=/scratch",
        "--set",
        "operator.extraContainers[0].name=proxy",
        "--set",
        "operator.extraContainers[0].image=registry.example/proxy:1",
        "--set",
        "batch.enabled=true",
        "--set",
        "batch.rollouts=false",
        "--set",
        "batch.nodeSelector.pool=batch",
        "--set",
        "gateway.deployment.enabled=true",
        "--set",
        "gateway.deployment.configMap=bot-llm-config",
        "--set",
        "gateway.deployment.tolerations[0].key=gpu",
        "--set",
        "gateway.deployment.tolerations[0].operator=Exists",
        "--set",
        "gateway.deployment.logFormat=json",
        "--set",
        "gateway.deployment.extraEnv[0].name=HTTPS_PROXY",
        "--set",
        "gateway.deployment.extraEnv[0].value=http://proxy:3128",
        "--set",
        "crds.keep=false",
    ],
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
        "operator.logLevel=loud": "/operator/logLevel",
        "gatewayMonitor.interval=often": "/gatewayMonitor/interval",
        "crds.upgrade=true": "/crds",
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
    for crd in crds:  # as `kubectl apply -f crds/` would: not this render's release labels
        crd["metadata"].pop("labels", None)
        crd["metadata"].pop("annotations", None)
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # The helm test pod runs as the chart's ServiceAccount, which exists by the time
    # `helm test` creates it: create the accounts for real, dry-run the rest.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(accounts))
    rest = [d for d in docs if d["kind"] not in ("CustomResourceDefinition", "ServiceAccount")]
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


def _render(kubeconfig: Path, *values: str) -> list[dict[str, Any]]:
    out = helm(kubeconfig, "template", "r", str(CHART), *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workload's pod spec, by kind/name."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            out[f"CronJob/{d['metadata']['name']}"] = d["spec"]["jobTemplate"]["spec"]["template"][
                "spec"
            ]
        elif d["kind"] == "Pod":
            out[f"Pod/{d['metadata']['name']}"] = d["spec"]
    return out


def test_names_security_placement_and_extras_reach_every_workload(kubeconfig: Path) -> None:
    docs = _render(kubeconfig, *VALUE_SETS["names-placement-and-extras"])
    pods = _pods(docs)
    assert set(pods) == {"Deployment/optimizer", "Deployment/optimizer-gateway",
                         "CronJob/optimizer-cycle", "Pod/optimizer-test-readyz"}  # fmt: skip
    for name, pod in pods.items():
        assert pod["imagePullSecrets"] == [{"name": "registry"}], name
        assert pod["securityContext"]["runAsUser"] == 65532, name
    operator, gateway = pods["Deployment/optimizer"], pods["Deployment/optimizer-gateway"]
    assert operator["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert operator["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert [c["name"] for c in operator["containers"]] == ["operator", "proxy"]
    args = operator["containers"][0]["args"]
    assert "--log-format=json" in args and args[-1] == "--log-level=warning"
    assert {"name": "scratch", "mountPath": "/scratch"} in operator["containers"][0]["volumeMounts"]
    assert {"name": "scratch", "emptyDir": {"medium": "Memory"}} in operator["volumes"]
    assert gateway["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert "--log-format=json" in gateway["containers"][0]["args"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in gateway["containers"][0]["env"]
    assert pods["CronJob/optimizer-cycle"]["nodeSelector"] == {"pool": "batch"}
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 5 and all("annotations" not in c["metadata"] for c in crds)  # keep off
    # The operator's own flags parse what the chart passes.
    from optimizer_operator.cli.main import build_parser

    parsed = build_parser().parse_args(args)
    assert parsed.log_format == "json" and parsed.log_level == "warning"

    shift = _pods(_render(kubeconfig, *VALUE_SETS["openshift"]))
    for name, pod in shift.items():
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"]), name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert all(c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
                   for c in pod["containers"]), name  # fmt: skip
    assert "Deployment/r-llmo" in shift


def test_recordings_go_from_the_gateways_to_the_operator_through_one_claim(
    kubeconfig: Path,
) -> None:
    """Router retraining's data path: the chart's gateways record to the claim, one file
    per pod; the operator mounts it read-only and is told where (LLMOPT_RECORDINGS_DIR)."""
    pods = _pods(_render(kubeconfig, *VALUE_SETS["recordings"]))
    operator = pods["Deployment/r-llm-optimizer"]
    gateway = pods["Deployment/r-llm-optimizer-gateway"]
    where = "/var/lib/llm-optimizer/recordings"
    claim = {"claimName": "llm-recordings"}
    assert {"name": "recordings", "persistentVolumeClaim": {**claim, "readOnly": True}} in (
        operator["volumes"]
    )
    main = operator["containers"][0]
    assert {"name": "recordings", "mountPath": where, "readOnly": True} in main["volumeMounts"]
    assert {"name": "LLMOPT_RECORDINGS_DIR", "value": where} in main["env"]
    assert {"name": "recordings", "persistentVolumeClaim": claim} in gateway["volumes"]
    gw = gateway["containers"][0]
    assert {"name": "recordings", "mountPath": where} in gw["volumeMounts"]
    assert gw["env"][0]["name"] == "POD_NAME"  # what $(POD_NAME) in --record expands to
    from optimizer_operator.cli.main import build_parser

    parsed = build_parser().parse_args(gw["args"])
    assert parsed.record == f"{where}/$(POD_NAME).jsonl" and parsed.record_redaction == "none"
    # Without a claim: nothing recorded, nothing mounted.
    plain = _pods(_render(kubeconfig, *VALUE_SETS["recordings"][4:]))
    gw = plain["Deployment/r-llm-optimizer-gateway"]["containers"][0]
    assert not any(a.startswith("--record") for a in gw["args"])
    env = plain["Deployment/r-llm-optimizer"]["containers"][0]["env"]
    assert "LLMOPT_RECORDINGS_DIR" not in {e["name"] for e in env}


def test_the_chart_works_as_a_subchart_with_global_values(kubeconfig: Path, tmp_path: Path) -> None:
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    (parent / "templates").mkdir()
    (parent / "templates" / "NOTES.txt").write_text("the platform, with llm-optimizer\n")
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "llm-optimizer", "version": "*",
                          "repository": f"file://{CHART}"}],
    }))  # fmt: skip
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example", "team": "ml-platform"},
        "llm-optimizer": {"fullnameOverride": "llmopt", "gatewayMonitor": {"enabled": True}},
    }))  # fmt: skip
    helm(kubeconfig, "dependency", "update", str(parent))
    lint = helm(kubeconfig, "lint", "--strict", str(parent), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = [d for d in yaml.safe_load_all(
        helm(kubeconfig, "template", "p", str(parent)).stdout) if d]  # fmt: skip
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "llmopt") in names and ("PodMonitor", "llmopt-gateways") in names


def test_the_gateway_monitor_scrapes_what_the_gateways_expose(kubeconfig: Path) -> None:
    """The PodMonitor's CRD (prometheus-operator) is not in the local cluster: its
    selector and port are checked against the pods it is for, the chart's own gateway
    and the shipped sidecar examples."""
    docs = _render(kubeconfig, "--set", "gatewayMonitor.enabled=true",
                   "--set", "gateway.deployment.enabled=true",
                   "--set", "gateway.deployment.configMap=bot-llm-config")  # fmt: skip
    (pm,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "llm-metrics", "path": "/metrics", "interval": "15s"}
    wanted = pm["spec"]["selector"]["matchLabels"]
    sidecars = [REPO / "config" / "examples" / "gateway-sidecar.yaml",
                REPO / "examples" / "kubectl" / "app.yaml"]  # fmt: skip
    templates = [d["spec"]["template"] for d in docs if d["kind"] == "Deployment"
                 and d["metadata"]["name"].endswith("-gateway")]  # fmt: skip
    for path in sidecars:
        templates += [d["spec"]["template"] for d in yaml.safe_load_all(path.read_text())
                      if d and d.get("kind") == "Deployment"]  # fmt: skip
    assert len(templates) == 3
    for template in templates:
        labels = template["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in wanted.items()), labels
        ports = [p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])]
        assert endpoint["port"] in ports, ports


def test_the_helm_test_pod_asks_the_operators_service(kubeconfig: Path) -> None:
    """No kubelet runs pods on the local control plane, so `helm test` cannot run here:
    the hook pod is checked for what it asks and of whom."""
    docs = _render(kubeconfig)
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    script = pod["spec"]["containers"][0]["command"][-1]
    port = svc["spec"]["ports"][0]["port"]
    assert f"http://{svc['metadata']['name']}.default.svc:{port}/readyz" in script
    # The script itself, against a server answering as the operator's /readyz does.
    import http.server
    import threading

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ready"}')

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = script.replace(f"{svc['metadata']['name']}.default.svc:{port}",
                           f"127.0.0.1:{server.server_address[1]}")  # fmt: skip
    import sys

    ran = subprocess.run([sys.executable, "-c", local], capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    server.shutdown()
    assert ran.returncode == 0 and "200" in ran.stdout, ran


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
        # The session applied the CRDs by hand: the release adopts them, as a user's
        # cluster where they were applied before the chart managed them.
        "--take-ownership",
        "--set",
        f"operator.watch.mode={mode}",
        "--set",
        "operator.prometheusUrl=http://127.0.0.1:1",
    )
    try:
        _check_installed(api, kubeconfig, namespace, release, tmp_path, mode)
    finally:
        helm(kubeconfig, "uninstall", release, "--namespace", namespace)


@pytest.mark.timeout(240)
def test_helm_installs_upgrades_and_keeps_the_crds(
    api: client.ApiClient, kubeconfig: Path, namespace: str, crds_installed: None
) -> None:
    ext = client.ApiextensionsV1Api(api)
    name = "rollouts.optimizer.llmops.dev"
    release = f"k{uuid.uuid4().hex[:6]}"
    base = ["--namespace", namespace, "--take-ownership", "--set", "operator.enabled=false"]
    helm(kubeconfig, "install", release, str(CHART), *base)
    try:
        crd = ext.read_custom_resource_definition(name)
        assert crd.metadata.annotations["meta.helm.sh/release-name"] == release
        assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
        # An old CRD in the cluster (a column lost): the upgrade brings the chart's back.
        columns = crd.spec.versions[0].additional_printer_columns
        ext.patch_custom_resource_definition(
            name, [{"op": "remove", "path": "/spec/versions/0/additionalPrinterColumns/0"}]
        )
        assert len(ext.read_custom_resource_definition(name).spec.versions[0]
                   .additional_printer_columns) == len(columns) - 1  # fmt: skip
        # Changed by another field manager (this test's client): Helm 4's server-side
        # apply takes the fields back only when told to, as the chart README says.
        helm(kubeconfig, "upgrade", release, str(CHART), *base, "--force-conflicts")
        again = ext.read_custom_resource_definition(name).spec.versions[0]
        assert [c.name for c in again.additional_printer_columns] == [c.name for c in columns]
    finally:
        helm(kubeconfig, "uninstall", release, "--namespace", namespace)
    # Kept: deleting the CRD would have deleted every Rollout in the cluster.
    assert ext.read_custom_resource_definition(name).metadata.name == name
    without = helm(kubeconfig, "template", "x", str(CHART), "--set", "crds.install=false").stdout
    assert "kind: CustomResourceDefinition" not in without


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


@pytest.mark.timeout(120)
async def test_a_prometheus_scrape_job_built_from_the_pod_monitor_scrapes_a_real_gateway(
    kubeconfig: Path, tmp_path: Path
) -> None:
    """prometheus-operator (which turns a PodMonitor into scrape configs) cannot run here:
    the job is built from the rendered PodMonitor and the rendered gateway pod as it would
    (the endpoint's path and interval; the container port its port name names), and the
    real Prometheus scrapes a real gateway with it."""
    from optimizer_operator.gateway.server import Gateway, GatewaySettings, server_options
    from optimizer_operator.local.prometheus import LocalPrometheus
    from optimizer_operator.providers.simulator import SimulatorProvider
    from tests.gateway.conftest import post_chat, serve, variant, write_variants

    docs = _render(kubeconfig, "--set", "gatewayMonitor.enabled=true",
                   "--set", "gateway.deployment.enabled=true",
                   "--set", "gateway.deployment.configMap=bot-llm-config")  # fmt: skip
    (pm,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"]
                 .endswith("-gateway")]  # fmt: skip
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == endpoint["port"])
    args = {a.split("=", 1)[0]: a.split("=", 1)[-1] for a in container["args"][1:]}
    assert int(args["--port"]) == port  # the gateway listens where the monitor looks
    config = tmp_path / "variants.json"
    write_variants(config, [variant("v1", 10000, role="stable")])
    simulator = SimulatorProvider(time_scale=0.01)
    settings = GatewaySettings(
        config_file=config, config_poll_interval=0.05, providers={"simulator": simulator}
    )
    gateway = Gateway(settings)
    runner, url = await serve(gateway.app(), server_options(gateway.s))
    job = {
        "job_name": f"podMonitor/{pm['metadata']['namespace']}/{pm['metadata']['name']}/0",
        "metrics_path": endpoint["path"],
        "scrape_interval": endpoint["interval"],
        "static_configs": [{"targets": [url.removeprefix("http://")],
                            "labels": {"container_port_name": endpoint["port"]}}],
    }  # fmt: skip
    prom = LocalPrometheus(tmp_path / "prom", [], interval="1s", extra_jobs=[job])
    prom.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            status, _, _ = await post_chat(s, url)
        assert status == 200
        query = 'llmopt_requests_total{container_port_name="llm-metrics",variant="v1"}'
        for _ in range(60):  # the monitor's interval (15 s) sets when the first scrape comes
            found = prom.query(query)
            if found:
                break
            await asyncio.sleep(0.5)
        assert found and float(found[0]["value"][1]) == 1.0, found
    finally:
        prom.stop()
        await runner.cleanup()
