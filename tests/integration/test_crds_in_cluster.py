"""The generated CRDs in a real API server: accepted, structural, printed, enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from optimizer_operator.api import ALL_KINDS, GROUP, VERSION
from tests.conftest import kubectl


def test_crds_are_established_and_structural(api: client.ApiClient, crds_installed: None) -> None:
    ext = client.ApiextensionsV1Api(api)
    for kind in ALL_KINDS:
        crd = ext.read_custom_resource_definition(kind.fqname)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True"
        assert conditions.get("NonStructuralSchema") is None, crd.status.conditions


def test_api_server_enforces_openapi_validation(
    api: client.ApiClient, crds_installed: None, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMConfig",
        "metadata": {"name": "bad"},
        "spec": {"provider": "cohere", "model": "x", "parameters": {"temperature": "hot"}},
    }
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmconfigs", body)
    assert err.value.status == 422
    assert "spec.provider" in err.value.body and "spec.parameters.temperature" in err.value.body


def test_api_server_keeps_every_field_of_a_sample(
    kubeconfig: Path, crds_installed: None, namespace: str
) -> None:
    # No operator here: what we read back is what the API server stored (no pruning).
    import yaml

    from tests.conftest import REPO

    for sample in sorted((REPO / "config" / "samples").glob("*.yaml")):
        doc = yaml.safe_load(sample.read_text())
        doc["metadata"]["namespace"] = namespace
        kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
        plural = {
            "LLMConfig": "llmconfigs",
            "OptimizationPolicy": "optimizationpolicies",
            "Rollout": "rollouts",
        }[doc["kind"]]
        out = kubectl(
            kubeconfig,
            "get",
            f"{plural}.{GROUP}",
            doc["metadata"]["name"],
            "-n",
            namespace,
            "-o",
            "yaml",
        ).stdout
        assert yaml.safe_load(out)["spec"] == doc["spec"], f"{sample.name} lost fields"
