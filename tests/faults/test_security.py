"""Secrets are only ever referenced: the value of a provider key never appears in the
CRs, their status, the rendered ConfigMap, Events, or the operator's log."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from tests.conftest import wait_for
from tests.faults.objects import create_llmconfig, create_rollout

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


def test_a_provider_key_is_referenced_never_copied(
    api: client.ApiClient, operator: Path, namespace: str
) -> None:
    value = f"sk-test-{secrets.token_hex(16)}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "llm-keys"}, "stringData": {"openai": value}}
    )
    endpoint = {
        "baseUrl": "http://llm.local/v1",
        "apiKeySecretRef": {"name": "llm-keys", "key": "openai"},
    }
    create_llmconfig(
        custom,
        namespace,
        "bot",
        {"provider": "openai", "model": "gpt-4o-mini", "endpoint": endpoint},
    )
    create_rollout(
        custom,
        namespace,
        "mini",
        target="bot",
        candidate={"provider": "openai", "model": "gpt-4.1-mini", "endpoint": endpoint},
        steps=[{"setWeight": 30}, {"pause": {}}],
    )

    def paused() -> bool:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "mini")
        return (obj.get("status") or {}).get("phase") == "Paused"

    wait_for(paused, 60, "the Rollout at its pause")
    cm = core.read_namespaced_config_map("bot-llm-config", namespace)
    variants = json.loads(cm.data["variants.json"])["variants"]
    assert len(variants) == 2
    for v in variants:  # the reference travels, the value does not
        assert v["endpoint"]["apiKeySecretRef"] == {"name": "llm-keys", "key": "openai"}
    everything = json.dumps(
        [
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            for plural, name in (("llmconfigs", "bot"), ("rollouts", "mini"))
        ]
        + [cm.to_dict(), [e.to_dict() for e in core.list_namespaced_event(namespace).items]],
        default=str,
    )
    assert "llm-keys" in everything and value not in everything
    assert value not in operator.read_text(errors="replace")
