"""``llm-optimizer simulator``: the simulator or replay provider as an OpenAI-compatible
server. It is the upstream in tests, the demo and benchmarks (the "direct" baseline),
and adds the ground-truth quality to responses under the ``llmopt`` key — unless asked
to answer as a plain OpenAI-compatible server (``--plain``), as a real provider would:
no ground truth at all."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..api.llmconfig import Parameters
from .base import ChatRequest, ProviderError
from .openai_wire import chunk_body, completion_body, error_body
from .replay import ReplayProvider
from .simulator import SimulatorProvider


def _params(body: dict[str, Any]) -> Parameters:
    values: dict[str, Any] = {}
    for wire, name in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_tokens", "max_tokens"),
        ("max_completion_tokens", "max_tokens"),
    ):
        if body.get(wire) is not None:
            v = body[wire]
            values[name] = str(v) if name in ("temperature", "top_p") else v
    return Parameters.model_validate(values)


def build_app(
    provider: SimulatorProvider | ReplayProvider, *, plain: bool = False
) -> web.Application:
    extension = not plain

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
            creq = ChatRequest(
                model=str(body["model"]),
                messages=list(body["messages"]),
                parameters=_params(body),
                request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
                attempt=int(request.headers.get("x-llmopt-attempt", "1")),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
            return web.json_response(
                error_body(f"bad request: {exc}", "invalid_request_error"), status=400
            )
        rid, created = f"chatcmpl-{creq.request_id}", int(time.time())
        try:
            if not body.get("stream"):
                result = await provider.complete(creq)
                return web.json_response(completion_body(result, rid, created, extension=extension))
            chunks = provider.stream(creq)
            first = await anext(chunks)
        except ProviderError as exc:
            return web.json_response(error_body(exc.message, exc.error_type), status=exc.status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = first
        while True:
            if chunk.delta:
                await resp.write(
                    b"data: "
                    + json.dumps(chunk_body(rid, created, creq.model, chunk.delta)).encode()
                    + b"\n\n"
                )
            if chunk.result is not None:
                r = chunk.result
                await resp.write(
                    b"data: "
                    + json.dumps(
                        chunk_body(rid, created, creq.model, None, r.finish_reason)
                    ).encode()
                    + b"\n\n"
                )
                await resp.write(
                    b"data: "
                    + json.dumps(
                        chunk_body(rid, created, creq.model, None, result=r, extension=extension)
                    ).encode()
                    + b"\n\n"
                )
                break
            chunk = await anext(chunks)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        names = (
            sorted(provider.fleet.models)
            if isinstance(provider, SimulatorProvider)
            else provider.dataset.models
        )
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": n, "object": "model", "created": 0, "owned_by": provider.name}
                    for n in names
                ],
            }
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=8 << 20)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    return app


def run(
    provider: SimulatorProvider | ReplayProvider, host: str, port: int, *, plain: bool = False
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(
        build_app(provider, plain=plain),
        host=host,
        port=port,
        access_log=None,
        print=lambda *_: None,
    )
