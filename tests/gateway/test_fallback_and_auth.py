"""The gateway's fallback to stable for a failing candidate, and its inbound bearer-key
auth in standalone mode: the real gateway over HTTP, real upstream servers."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, variant


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _split(candidate_url: str, model: str = "sim-small") -> list[dict[str, object]]:
    return [
        variant("v1", 0, role="stable", model="sim-medium"),  # all traffic on the candidate
        variant("canary-1", 10000, provider="openai", model=model, base_url=candidate_url),
    ]


async def test_a_failing_candidate_is_answered_by_stable_and_counted_as_its_error(
    start_gateway: GatewayFactory,
) -> None:
    gateway, url = await start_gateway(
        _split(_dead_url()), max_attempts=2, retry_backoff=0.001, fallback_to_stable=True
    )
    async with aiohttp.ClientSession() as s:
        answers = [await post_chat(s, url, headers={"X-Request-Id": f"r{i}"}) for i in range(5)]
        streamed = await s.post(
            url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        text = await streamed.text()
    for status, body, headers in answers:
        assert status == 200, body
        assert headers["X-LLMOpt-Variant"] == "v1"
        assert headers["X-LLMOpt-Fallback-From"] == "canary-1"
        assert body["choices"][0]["message"]["content"]
    assert streamed.status == 200 and streamed.headers["X-LLMOpt-Fallback-From"] == "canary-1"
    assert text.rstrip().endswith("data: [DONE]")
    # For analysis the candidate failed six times, as without the fallback.
    errors = metric_value(gateway, "llmopt_errors_total", variant="canary-1")
    assert errors == 6
    assert metric_value(gateway, "llmopt_fallbacks_total", variant="canary-1") == 6
    assert metric_value(gateway, "llmopt_upstream_retries_total", variant="canary-1") == 6
    assert metric_value(gateway, "llmopt_requests_total", variant="v1", status="200") == 6


async def test_without_the_option_or_on_a_refused_request_there_is_no_fallback(
    start_gateway: GatewayFactory, simulator_url: str
) -> None:
    _, plain = await start_gateway(_split(_dead_url()), max_attempts=1)
    refused, url = await start_gateway(
        _split(simulator_url, model="no-such-model"), max_attempts=1, fallback_to_stable=True
    )
    async with aiohttp.ClientSession() as s:
        status, body, headers = await post_chat(s, plain)
        assert status == 502 and headers["X-LLMOpt-Variant"] == "canary-1"
        status, body, headers = await post_chat(s, url)
    # The provider refused the request itself (4xx): stable would be asked the same.
    assert 400 <= status < 500, body
    assert "X-LLMOpt-Fallback-From" not in headers
    assert metric_value(refused, "llmopt_fallbacks_total") == 0


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text("# keys of the gateway\nsk-first-key\n\n")
    return path


async def test_standalone_auth_needs_a_bearer_key_and_never_logs_it(
    start_gateway: GatewayFactory, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway, url = await start_gateway(
        [variant("v1", 10000, role="stable")], api_keys_file=key_file
    )
    async with aiohttp.ClientSession() as s:
        status, body, headers = await post_chat(s, url)
        assert status == 401 and body["error"]["type"] == "invalid_api_key"
        assert headers["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await post_chat(s, url, headers={"Authorization": "Bearer sk-wrong"})
        assert status == 401
        status, body, _ = await post_chat(s, url, headers={"Authorization": "Basic sk-first-key"})
        assert status == 401
        status, body, _ = await post_chat(s, url, headers={"Authorization": "Bearer sk-first-key"})
        assert status == 200, body
        for open_path in ("/healthz", "/readyz", "/metrics"):
            async with s.get(url + open_path) as resp:
                assert resp.status == 200, open_path
        async with s.get(url + "/v1/models") as resp:
            assert resp.status == 401
        # A rotated Secret: the file changes, the old key stops working.
        key_file.write_text("sk-second-key\n")
        stat = key_file.stat()
        os.utime(key_file, (stat.st_atime, stat.st_mtime + 5))
        old = await post_chat(s, url, headers={"Authorization": "Bearer sk-first-key"})
        new = await post_chat(s, url, headers={"Authorization": "Bearer sk-second-key"})
    assert old[0] == 401 and new[0] == 200
    assert metric_value(gateway, "llmopt_gateway_rejected_total", reason="unauthorized") == 5
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sk-first-key" not in logged and "sk-second-key" not in logged
    assert "sk-wrong" not in logged
    assert "sk-first-key" not in json.dumps(body)


def test_the_gateway_refuses_to_start_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optimizer_operator.cli.main import main

    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    config = tmp_path / "variants.json"
    config.write_text("{}")
    for path, says in ((empty, "no keys"), (tmp_path / "missing", "No such file")):
        code = main(["gateway", "--config", str(config), "--api-keys-file", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: --api-keys-file:") and says in err, err
