"""The contract between operator and gateway, on the real API server.

The operator renders an LLMConfig into its ConfigMap; a gateway watching that
ConfigMap through the API serves the variant it describes, and follows a spec
change without a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from optimizer_operator.gateway.server import Gateway, GatewaySettings
from optimizer_operator.providers.simulator import SimulatorProvider
from tests.conftest import kubectl
from tests.gateway.conftest import post_chat, serve


async def _wait_variant(url: str, want_model: str, timeout: float = 30) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        for _ in range(int(timeout / 0.2)):
            async with s.get(url + "/readyz") as resp:
                ready = resp.status == 200
            if ready:
                status, body, headers = await post_chat(s, url)
                if status == 200 and body["model"] == want_model:
                    return {"body": body, "headers": dict(headers)}
            await asyncio.sleep(0.2)
    raise AssertionError(f"gateway never served {want_model}")


async def test_gateway_serves_what_the_operator_renders(
    kubeconfig: Path, operator: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    llmc = {
        "apiVersion": "optimizer.llmops.dev/v1alpha1",
        "kind": "LLMConfig",
        "metadata": {"name": "bot", "namespace": namespace},
        "spec": {
            "provider": "simulator",
            "model": "sim-medium",
            "parameters": {"temperature": "0.3", "maxTokens": 64},
        },
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(llmc))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    gateway = Gateway(
        GatewaySettings(
            configmap=f"{namespace}/bot-llm-config",
            providers={"simulator": SimulatorProvider(time_scale=0)},
        )
    )
    runner, url = await serve(gateway.app())
    try:
        first = await _wait_variant(url, "sim-medium")
        assert first["headers"]["X-LLMOpt-Variant"] == "v1"
        assert first["body"]["usage"]["completion_tokens"] <= 64
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
        second = await _wait_variant(url, "sim-small")
        assert second["headers"]["X-LLMOpt-Variant"] == "v2"
    finally:
        await runner.cleanup()
