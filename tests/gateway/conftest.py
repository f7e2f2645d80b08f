"""Fixtures for the data plane: real gateway and simulator servers on loopback ports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from optimizer_operator.gateway.server import Gateway, GatewaySettings, server_options
from optimizer_operator.local.cluster import free_port
from optimizer_operator.providers.serve import build_app
from optimizer_operator.providers.simulator import SimulatorProvider, load_fleet, parse_fleet

TIME_SCALE = 0.01  # simulated latencies x0.01: tests run fast, draws are unchanged


async def serve(
    app: web.Application, options: dict[str, Any] | None = None
) -> tuple[web.AppRunner, str]:
    """Run ``app`` on a free 127.0.0.1 port (a gateway with its ``server_options``);
    returns the runner and base URL."""
    runner = web.AppRunner(app, **(options or {"access_log": None}))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def variant(
    vid: str,
    weight: int,
    *,
    role: str = "candidate",
    provider: str = "simulator",
    model: str = "sim-medium",
    parameters: dict[str, Any] | None = None,
    base_url: str | None = None,
    ground_truth: bool = False,
) -> dict[str, Any]:
    v: dict[str, Any] = {
        "id": vid,
        "role": role,
        "hash": f"h-{vid}",
        "weight": weight,
        "provider": provider,
        "model": model,
        "parameters": parameters or {},
    }
    if base_url:
        v["endpoint"] = {"baseUrl": base_url, **({"groundTruth": True} if ground_truth else {})}
    return v


def write_variants(path: Path, variants: list[dict[str, Any]], llm_config: str = "bot") -> None:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "optimizer.llmops.dev/v1alpha1",
                "kind": "VariantSet",
                "llmConfig": llm_config,
                "namespace": "default",
                "variants": variants,
            }
        )
    )


@pytest.fixture()
async def simulator_url() -> AsyncIterator[str]:
    """The real simulator server (the OpenAI-compatible upstream) on a loopback port."""
    runner, url = await serve(build_app(SimulatorProvider(time_scale=TIME_SCALE)))
    yield url + "/v1"
    await runner.cleanup()


def _fixed_model(error_rate: str = "0", timeout_rate: str = "0") -> dict[str, Any]:
    """A fleet entry with a fixed 10 ms latency and 20-token answers."""
    quality = {
        "base": "0.5",
        "bestTemperature": "0",
        "tempSensitivity": "0",
        "bestTopP": "1",
        "topPSensitivity": "0",
        "truncationPenalty": "0",
    }
    return {
        "price": {"input": "1", "output": "1"},
        "ttftSeconds": {"median": "0.01", "sigma": "0"},
        "tokensPerSecond": {"mean": "0", "stddev": "0"},
        "answerTokens": {"median": 20, "sigma": "0"},
        "errorRate": error_rate,
        "timeoutRate": timeout_rate,
        "quality": quality,
    }


@pytest.fixture()
async def flaky_simulator_url(tmp_path: Path) -> AsyncIterator[str]:
    """A simulator fleet whose `flaky` model fails half its calls and `hang` never answers."""
    doc = {
        "seed": 3,
        "hangSeconds": 2,
        "models": {"flaky": _fixed_model(error_rate="0.5"), "hang": _fixed_model(timeout_rate="1")},
    }
    runner, url = await serve(build_app(SimulatorProvider(parse_fleet(doc), time_scale=1.0)))
    yield url + "/v1"
    await runner.cleanup()


GatewayFactory = Callable[..., Awaitable[tuple[Gateway, str]]]


@pytest.fixture()
async def start_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start real gateways (in this process, on loopback ports) with a variants file."""
    runners: list[web.AppRunner] = []

    async def start(variants: list[dict[str, Any]] | None, **settings: Any) -> tuple[Gateway, str]:
        config = tmp_path / f"variants-{len(runners)}.json"
        if variants is not None:
            write_variants(config, variants)
        settings.setdefault("config_poll_interval", 0.05)
        settings.setdefault(
            "providers", {"simulator": SimulatorProvider(load_fleet(), time_scale=TIME_SCALE)}
        )
        gateway = Gateway(GatewaySettings(config_file=config, **settings))
        runner, url = await serve(gateway.app(), server_options(gateway.s))
        runners.append(runner)
        return gateway, url

    yield start
    for runner in runners:
        await runner.cleanup()


async def post_chat(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, Any]:
    """POST a chat completion; returns status, parsed JSON (or text), headers."""
    payload = (
        body
        if body is not None
        else {"model": "any", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    )
    kwargs: dict[str, Any] = (
        {"data": raw, "headers": {"Content-Type": "application/json", **(headers or {})}}
        if raw is not None
        else {"json": payload, "headers": headers or {}}
    )
    async with session.post(url + "/v1/chat/completions", **kwargs) as resp:
        text = await resp.text()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        return resp.status, parsed, resp.headers


def metric_value(gateway: Gateway, name: str, **labels: str) -> float:
    """Sum of a metric's samples matching ``labels`` in the gateway's registry."""
    total = 0.0
    for family in gateway.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def otlp_receiver(spans: list[Any]) -> web.Application:
    """A real OTLP/HTTP trace receiver that appends every exported span to ``spans``."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    async def collect(request: web.Request) -> web.Response:
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    return app
