"""The gateway under hostile or careless clients: each is answered with a 4xx or closed,
counted once, without a traceback, in bounded time."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from optimizer_operator.providers.simulator import SimulatorProvider, load_fleet
from tests.gateway.conftest import GatewayFactory, metric_value, post_chat, variant

STABLE = variant("v1", 10000, role="stable", model="sim-medium")


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.parametrize("opener", ["[", '{"a":'])
async def test_a_deeply_nested_body_is_a_400_not_a_500(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture, opener: str
) -> None:
    gateway, url = await start_gateway([STABLE])
    closer = "]" if opener == "[" else "}"
    deep = (opener * 100_000 + "1" + closer * 100_000).encode()
    async with aiohttp.ClientSession() as s:
        status, body, _ = await post_chat(s, url, raw=deep)
        assert status == 400, body
        assert body["error"]["type"] == "invalid_request_error"
        assert "nests deeper than 64 levels" in body["error"]["message"]
        async with s.post(url + "/v1/feedback", data=deep) as resp:
            assert resp.status == 400
            assert "nests deeper" in (await resp.json())["error"]["message"]
        status, _, _ = await post_chat(s, url)  # and the gateway goes on serving
        assert status == 200
    assert (
        metric_value(gateway, "llmopt_gateway_rejected_total", reason="invalid_request_error") == 2
    )
    _no_tracebacks(caplog)


async def test_a_client_that_drops_a_stream_mid_answer_is_counted_once(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Real-time simulated latencies: the answer streams for seconds, time to drop it.
    slow = {"simulator": SimulatorProvider(load_fleet(), time_scale=1.0)}
    gateway, url = await start_gateway([STABLE], providers=slow)
    port = int(url.rsplit(":", 1)[1])
    request = json.dumps(
        {"messages": [{"role": "user", "content": "Explain canaries."}], "stream": True}
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(request)}\r\n\r\n".encode()
        + request
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"data: " in await asyncio.wait_for(reader.read(256), timeout=30)  # mid-answer
    writer.close()  # the client goes away
    await writer.wait_closed()
    for _ in range(300):
        if metric_value(gateway, "llmopt_client_disconnects_total", variant="v1") >= 1:
            break
        await asyncio.sleep(0.05)
    assert metric_value(gateway, "llmopt_client_disconnects_total", variant="v1") == 1
    assert metric_value(gateway, "llmopt_errors_total", variant="v1") == 0  # not the variant's
    assert metric_value(gateway, "llmopt_requests_total", variant="v1", status="200") == 0
    _no_tracebacks(caplog)


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app"],
    ids=["nothing", "unfinished-headers"],
)
async def test_a_connection_idle_or_never_finishing_its_headers_is_closed(
    start_gateway: GatewayFactory, sent: bytes
) -> None:
    _, url = await start_gateway([STABLE], idle_timeout=0.5)
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    # Closed by the gateway (EOF) well within the wait, not held open forever.
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    writer.close()
