"""The gateway: an OpenAI-compatible HTTP server that splits traffic across variants.

Routes: ``POST /v1/chat/completions`` (JSON or ``stream: true`` server-sent
events), ``GET /v1/models``, ``POST /v1/feedback``, ``/healthz``, ``/readyz``,
``/metrics``. Prompts, responses and API keys are never logged unless
``log_content`` is set (and keys never are).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from ..api.llmconfig import Parameters
from ..api.variants import Variant
from ..providers import ChatRequest, ChatResult, Provider, ProviderError
from ..providers import create as create_provider
from ..providers.catalog import price_catalog
from ..providers.openai_wire import chunk_body, completion_body, error_body
from ..providers.pricing import PricingCatalog
from ..providers.tokens import prompt_text
from ..tracing import Tracer, forwarded_trace_headers, genai_attributes
from .auth import KeyFile
from .body import BadJson, parse_json
from .config_source import ConfigHolder, watch_configmap, watch_file
from .evaluators import PAIRWISE, EvaluationQueue, Sample, parse_specs
from .metrics import GatewayMetrics
from .pairwise import PairwiseJudge, PairwiseSettings
from .ratelimit import RateLimiter, parse_rate_limit
from .recording import Recorder
from .routing import Route, RoutingTable, request_as

log = logging.getLogger("llmopt.gateway")

ROLES = {"system", "user", "assistant", "tool", "developer", "function"}
# Client fields mapped onto Parameters (the variant's own values win).
_CLIENT_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "stop": "stop",
    "seed": "seed",
}
_NOT_PASSED = {"model", "messages", "stream", "stream_options", *_CLIENT_PARAMS}
_DECIMALS = {"temperature", "top_p", "presence_penalty", "frequency_penalty"}


@dataclass
class GatewaySettings:
    """Everything the gateway can be told; defaults suit a sidecar."""

    host: str = "0.0.0.0"
    port: int = 8080
    config_file: Path | None = None
    configmap: str | None = None  # "namespace/name", watched through the API
    configmap_key: str = "variants.json"
    sticky_header: str = "x-llmopt-sticky-key"
    reference_header: str = "x-llmopt-reference"
    client_header: str = "x-client-id"
    upstream_timeout: float = 120.0
    max_attempts: int = 2
    retry_backoff: float = 0.1
    max_body_bytes: int = 1 << 20
    client_body_timeout: float = 30.0
    # A connection idle, or still sending its request line and headers, this long after
    # it opened (or after its last answer) is closed: no slow client holds a socket.
    idle_timeout: float = 15.0
    log_content: bool = False
    evaluators: str = "ground_truth=1"
    eval_queue_size: int = 2000
    pricing: Path | None = None
    rate_limit: str | None = None
    record: Path | None = None
    record_redaction: str = "pii"
    otlp_endpoint: str | None = None
    feedback_capacity: int = 50_000
    max_in_flight: int = 2048  # beyond this, shed load with 503 instead of queueing
    config_poll_interval: float = 1.0
    # A candidate's request that fails after its retries (5xx, timeout, 429) is answered
    # by stable: counted as the candidate's error, and in llmopt_fallbacks_total.
    fallback_to_stable: bool = False
    # Standalone mode: accepted bearer keys, one per line (a Secret mounted as a file).
    api_keys_file: Path | None = None
    providers: dict[str, Provider] = field(default_factory=dict)  # tests may inject


def _error(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        error_body(message, error_type, param=param), status=status, headers=headers
    )


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _client_parameters(body: dict[str, Any]) -> Parameters:
    values: dict[str, Any] = {}
    for wire, name in _CLIENT_PARAMS.items():
        if wire not in body or body[wire] is None:
            continue
        value = body[wire]
        if name in _DECIMALS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{wire} must be a number", wire)
            value = format(Decimal(repr(float(value))).normalize(), "f")
        elif name == "stop" and isinstance(value, str):
            value = [value]
        values[name] = value
    try:
        return Parameters.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field_name = str(first["loc"][0]) if first["loc"] else None
        param = next((w for w, n in _CLIENT_PARAMS.items() if n == field_name), field_name)
        message = first["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{param}: {message}", param) from None


def _validate_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object", f"messages[{i}]")
        if message.get("role") not in ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadRequest(
                f"messages[{i}].content must be a string or an array", f"messages[{i}].content"
            )
    return messages


class Gateway:
    """The gateway's state and handlers; ``app()`` builds the aiohttp application."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.s = settings
        self.metrics = GatewayMetrics()
        self.config = ConfigHolder(
            on_change=self._on_config,
            on_error=lambda _: self.metrics.config_reloads.labels("failed").inc(),
        )
        self.pricing: PricingCatalog = price_catalog(settings.pricing)
        self.providers: dict[str, Provider] = dict(settings.providers)
        self.limiter: RateLimiter | None = (
            parse_rate_limit(settings.rate_limit) if settings.rate_limit else None
        )
        specs = parse_specs(settings.evaluators)
        self.evaluations = EvaluationQueue(
            [e for e in specs if e.name != PAIRWISE],
            self.metrics,
            maxsize=settings.eval_queue_size,
        )
        pairwise = [e for e in specs if e.name == PAIRWISE]
        self.pairwise: PairwiseJudge | None = (
            PairwiseJudge(
                PairwiseSettings.from_options(pairwise[0].rate, pairwise[0].options),
                self.metrics,
                self.pricing,
                self.provider,
            )
            if pairwise
            else None
        )
        self.keys = KeyFile(settings.api_keys_file) if settings.api_keys_file else None
        self.recorder: Recorder | None = None
        self.tracer: Tracer | None = None
        self._served: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._served_keys: dict[tuple[str, str], tuple[str, str]] = {}  # one tuple per variant
        self.in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._shadows: set[asyncio.Task[None]] = set()
        self._stop_watch = threading.Event()
        self._rng = random.Random()

    # -- configuration -----------------------------------------------------

    def _on_config(self, table: RoutingTable) -> None:
        self.metrics.config_reloads.labels("ok").inc()
        self.metrics.set_weights(
            table.variant_set.namespace,
            table.llm_config,
            [(v.id, v.role, v.hash, v.weight) for v in table.variant_set.variants],
        )

    def provider(self, name: str) -> Provider:
        p = self.providers.get(name)
        if p is None:
            p = self.providers[name] = create_provider(name)
        return p

    # -- lifecycle ---------------------------------------------------------

    async def _startup(self, app: web.Application) -> None:
        if self.s.config_file is not None:
            self._tasks.append(
                asyncio.create_task(
                    watch_file(self.config, self.s.config_file, self.s.config_poll_interval)
                )
            )
        if self.s.configmap:
            namespace, _, name = self.s.configmap.partition("/")
            watch_configmap(
                self.config,
                asyncio.get_running_loop(),
                namespace,
                name,
                self.s.configmap_key,
                self._stop_watch,
            )
        self.evaluations.start()
        if self.s.record is not None:
            self.recorder = Recorder(self.s.record, self.s.record_redaction)
            self.recorder.start()
        if self.s.otlp_endpoint:
            self.tracer = Tracer(self.s.otlp_endpoint)

    async def _cleanup(self, app: web.Application) -> None:
        self._stop_watch.set()
        if self.pairwise is not None:
            self.pairwise.cancel()
        for task in [*self._tasks, *self._shadows]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._shadows, return_exceptions=True)
        await self.evaluations.stop()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.tracer is not None:
            self.tracer.shutdown()
        for p in self.providers.values():
            await p.close()

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """With keys configured, /v1/… needs ``Authorization: Bearer <key>`` (401 else);
        health, readiness and metrics stay open."""
        if (
            self.keys is not None
            and request.path.startswith("/v1/")
            and not self.keys.allows(request.headers.get("Authorization"))
        ):
            self.metrics.rejected.labels("unauthorized").inc()
            return _error(
                401,
                "missing or invalid API key: send Authorization: Bearer <key>",
                "invalid_api_key",
                headers={"WWW-Authenticate": 'Bearer realm="llm-gateway"'},
            )
        response: web.StreamResponse = await handler(request)
        return response

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.s.max_body_bytes, middlewares=[self._authenticate]
        )
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/feedback", self.feedback)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    # -- small endpoints ---------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.config.table is None:
            return web.json_response(
                {"status": "not ready", "reason": self.config.last_error or "no config yet"},
                status=503,
            )
        return web.json_response(
            {
                "status": "ready",
                "llmConfig": self.config.table.llm_config,
                "lastError": self.config.last_error,
            }
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, request: web.Request) -> web.Response:
        table = self.config.table
        variants = table.variant_set.variants if table else []
        data, seen = [], set()
        for v in variants:
            if v.model not in seen:
                seen.add(v.model)
                data.append(
                    {"id": v.model, "object": "model", "created": 0, "owned_by": v.provider}
                )
        return web.json_response({"object": "list", "data": data})

    async def feedback(self, request: web.Request) -> web.Response:
        try:
            body = parse_json(await request.read())
        except BadJson as exc:
            self.metrics.rejected.labels("invalid_request_error").inc()
            return _error(400, str(exc), "invalid_request_error")
        response_id, score = body.get("response_id"), body.get("score")
        if not isinstance(response_id, str):
            return _error(
                400,
                "response_id (string) is required",
                "invalid_request_error",
                param="response_id",
            )
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            return _error(
                400, "score must be a number from 0 to 1", "invalid_request_error", param="score"
            )
        served = self._served.get(response_id)
        if served is None:
            return _error(
                404,
                f"unknown or expired response_id {response_id}",
                "not_found_error",
                param="response_id",
            )
        llm_config, variant = served
        self.evaluations.observe(llm_config, variant, "human", float(score))
        self.metrics.feedback.labels(self.metrics.ns, llm_config, variant).inc()
        return web.json_response({"status": "recorded", "variant": variant})

    # -- chat completions --------------------------------------------------

    def _fail(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        llm_config: str = "",
        variant: str = "",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        if llm_config:
            self.metrics.requests.labels(self.metrics.ns, llm_config, variant, str(status)).inc()
            self.metrics.errors.labels(self.metrics.ns, llm_config, variant, error_type).inc()
        else:
            self.metrics.rejected.labels(error_type).inc()
        return _error(status, message, error_type, param=param, headers=headers)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.in_flight >= self.s.max_in_flight:
            # Shed load early: a fast 503 keeps memory and latency bounded under overload.
            return self._fail(
                503,
                "overloaded",
                "gateway at its in-flight limit; retry later",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:  # noqa: C901, PLR0912, PLR0915  the hot path, kept in one frame
        started = time.perf_counter()
        headers = request.headers
        if self.limiter is not None:
            client = headers.get(self.s.client_header) or request.remote or "unknown"
            wait = self.limiter.acquire(client)
            if wait > 0:
                return self._fail(
                    429,
                    "rate_limited",
                    "rate limit exceeded for this client",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        table = self.config.table
        if table is None:
            return self._fail(
                503,
                "no_configuration",
                "gateway has no variant configuration yet: "
                f"{self.config.last_error or 'waiting for the ConfigMap'}",
            )
        length = request.content_length
        if length is not None and length > self.s.max_body_bytes:
            return self._fail(
                413, "request_too_large", f"request body over {self.s.max_body_bytes} bytes"
            )
        try:
            async with asyncio.timeout(self.s.client_body_timeout):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._fail(
                413, "request_too_large", f"request body over {self.s.max_body_bytes} bytes"
            )
        except TimeoutError:
            return self._fail(408, "request_timeout", "client sent the body too slowly")
        try:
            body = parse_json(raw)
        except BadJson as exc:
            return self._fail(400, "invalid_request_error", str(exc))
        try:
            messages = _validate_messages(body)
            client_params = _client_parameters(body)
        except BadRequest as exc:
            return self._fail(400, "invalid_request_error", str(exc), param=exc.param)
        stream = bool(body.get("stream"))

        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        variant = table.pick(headers.get(self.s.sticky_header) or request_id)
        llm_config = table.llm_config
        route = table.routes.get(variant.id)
        if route is not None and route.mode == "prompt":
            variant = self._routed(route, route.pick(prompt_text(messages))[0], llm_config)
        params = client_params.model_copy(
            update={k: v for k, v in variant.parameters.model_dump().items() if v is not None}
        )
        trace_headers = forwarded_trace_headers(headers)
        span = None
        if self.tracer is not None:
            span = self.tracer.start(
                headers,
                variant.model,
                genai_attributes(
                    provider=variant.provider,
                    model=variant.model,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_tokens,
                    llm_config=llm_config,
                    variant=variant.id,
                ),
            )
            trace_headers = self.tracer.inject(span)
        creq = ChatRequest(
            model=variant.model,
            messages=messages,
            parameters=params,
            request_id=request_id,
            endpoint=variant.endpoint,
            passthrough={k: v for k, v in body.items() if k not in _NOT_PASSED},
            headers=trace_headers,
        )
        response_id = f"chatcmpl-{request_id}"
        shadow = table.mirror_for(headers.get(self.s.sticky_header) or request_id, variant)
        if shadow is not None:
            self._mirror(creq, client_params, shadow, llm_config, headers)
        if self.s.log_content:
            log.debug("request %s prompt=%r", request_id, prompt_text(messages))
        if route is not None and route.mode == "cascade":
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._cascade(
                request, route, creq, client_params, llm_config, response_id, started,
                stream, include_usage, span, headers.get(self.s.reference_header),
            )  # fmt: skip
        fallback_from: str | None = None
        while True:  # once, or twice when a failed candidate's request falls back to stable
            try:
                if stream:
                    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    return await self._stream(
                        request,
                        creq,
                        variant,
                        llm_config,
                        response_id,
                        started,
                        include_usage,
                        span,
                        headers.get(self.s.reference_header),
                        fallback_from,
                    )
                result = await self._complete(creq, variant, llm_config)
                break
            except ProviderError as exc:
                stable = self._fallback(exc, variant, table)
                if stable is None:
                    return self._upstream_failed(
                        exc, variant, llm_config, started, request_id, span
                    )
                self._fell_back(exc, variant, stable, llm_config, started, request_id, span)
                fallback_from, variant = variant.id, stable
                creq = request_as(creq, stable, client_params, "")
                started = time.perf_counter()
        self._succeeded(
            result,
            creq,
            variant,
            llm_config,
            response_id,
            started,
            headers.get(self.s.reference_header),
            span,
        )
        self._judge_against_stable(creq, variant, result, llm_config, client_params)
        answer_headers = {
            "X-Request-Id": request_id,
            "X-LLMOpt-Variant": variant.id,
            "X-LLMOpt-Config-Hash": variant.hash,
        }
        if fallback_from is not None:
            answer_headers["X-LLMOpt-Fallback-From"] = fallback_from
        return web.json_response(
            completion_body(result, response_id, int(time.time())), headers=answer_headers
        )

    def _routed(self, route: Route, target: Variant, llm_config: str) -> Variant:
        """Count a router's decision; the variant that answers."""
        side = "cheap" if target is route.cheap else "strong"
        self.metrics.router_decisions.labels(self.metrics.ns, llm_config, target.id, side).inc()
        return target

    async def _cascade(
        self,
        request: web.Request,
        route: Route,
        creq: ChatRequest,
        client_params: Parameters,
        llm_config: str,
        response_id: str,
        started: float,
        stream: bool,
        include_usage: bool,
        span: Any,
        reference: str | None,
    ) -> web.StreamResponse:
        """The cheap model answers first; the router reads its answer and keeps it or asks
        the strong model (a failed cheap call escalates too). Both calls are the router
        variant's cost; its latency is the whole wait. A stream escalates before its first
        byte: the cheap answer is complete before it is judged."""
        cheap_req = request_as(creq, route.cheap, client_params, "")
        try:
            first: ChatResult | None = await self._complete(cheap_req, route.cheap, llm_config)
        except ProviderError as exc:
            log.info("request %s: cheap call failed (%s), escalating", creq.request_id, exc)
            first = None
        prompt = prompt_text(creq.messages)
        target = route.pick(prompt, first.text)[0] if first is not None else route.strong
        self._routed(route, target, llm_config)
        if first is not None and target is route.cheap:
            self._succeeded(first, cheap_req, target, llm_config, response_id, started,
                            reference, span)  # fmt: skip
            self._judge_against_stable(cheap_req, target, first, llm_config, client_params)
            if stream:
                return await self._stream_result(request, first, target, response_id,
                                                 include_usage)  # fmt: skip
            return web.json_response(
                completion_body(first, response_id, int(time.time())),
                headers={"X-Request-Id": creq.request_id, "X-LLMOpt-Variant": target.id,
                         "X-LLMOpt-Config-Hash": target.hash, "X-LLMOpt-Routed-To": "cheap"},
            )  # fmt: skip
        if first is not None:  # paid for either way
            cost = self.pricing.cost(route.cheap.model, first.input_tokens, first.output_tokens)
            series = self.metrics.series(self.metrics.ns, llm_config, route.cheap.id,
                                         route.cheap.provider, route.cheap.model)  # fmt: skip
            series.cost.inc(cost or 0.0)
            # The answer the router turned down is recorded too: a cascade's recordings
            # label the cheap model on every request, not only those it kept.
            self._record(first, route.cheap, prompt, llm_config)
        strong_req = request_as(creq, route.strong, client_params, "")
        try:
            if stream:
                return await self._stream(
                    request, strong_req, route.strong, llm_config, response_id, started,
                    include_usage, span, reference,
                )  # fmt: skip
            result = await self._complete(strong_req, route.strong, llm_config)
        except ProviderError as exc:
            return self._upstream_failed(exc, route.strong, llm_config, started,
                                         creq.request_id, span)  # fmt: skip
        self._succeeded(result, strong_req, route.strong, llm_config, response_id, started,
                        reference, span)  # fmt: skip
        self._judge_against_stable(strong_req, route.strong, result, llm_config, client_params)
        return web.json_response(
            completion_body(result, response_id, int(time.time())),
            headers={"X-Request-Id": creq.request_id, "X-LLMOpt-Variant": route.strong.id,
                     "X-LLMOpt-Config-Hash": route.strong.hash, "X-LLMOpt-Routed-To": "strong"},
        )  # fmt: skip

    async def _stream_result(
        self,
        request: web.Request,
        result: ChatResult,
        variant: Variant,
        response_id: str,
        include_usage: bool,
    ) -> web.StreamResponse:
        """A finished answer sent as server-sent events (a cascade's kept cheap answer)."""
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-LLMOpt-Variant": variant.id, "X-LLMOpt-Config-Hash": variant.hash,
            "X-LLMOpt-Routed-To": "cheap",
        })  # fmt: skip
        await resp.prepare(request)
        created = int(time.time())
        await resp.write(self._sse(chunk_body(response_id, created, variant.model, result.text,
                                              tool_calls=result.tool_calls)))  # fmt: skip
        await resp.write(self._sse(chunk_body(response_id, created, variant.model, None,
                                              result.finish_reason)))  # fmt: skip
        if include_usage:
            await resp.write(self._sse(chunk_body(response_id, created, variant.model, None,
                                                  result=result)))  # fmt: skip
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _fell_back(
        self,
        err: ProviderError,
        variant: Variant,
        stable: Variant,
        llm_config: str,
        started: float,
        request_id: str,
        span: Any,
    ) -> None:
        """The candidate's failure is its error for analysis, as without the fallback
        (stable's answer is stable's, timed from its own start); counted and logged."""
        self._record_failure(err, variant, llm_config, started, None)
        self.metrics.fallbacks.labels(self.metrics.ns, llm_config, variant.id).inc()
        log.warning(
            "request %s variant=%s failed (%s %s): answered by stable %s",
            request_id, variant.id, err.status, err.error_type, stable.id,
        )  # fmt: skip
        if span is not None:
            span.set_attribute("llmopt.fallback_from", variant.id)

    def _fallback(
        self, err: ProviderError, variant: Variant, table: RoutingTable
    ) -> Variant | None:
        """Stable, when a candidate's request failed after its retries on the provider's
        side (5xx, timeout, 429) and the gateway falls back; else None. A request the
        provider refused as invalid (4xx) is the client's error either way."""
        if not self.s.fallback_to_stable or variant.role == "stable":
            return None
        if err.status < 500 and err.status != 429:
            return None
        stable = table.stable
        return stable if stable is not None and stable.id != variant.id else None

    def _mirror(
        self,
        creq: ChatRequest,
        client_params: Parameters,
        shadow: Variant,
        llm_config: str,
        headers: Any,
    ) -> None:
        """Send a copy of the request to ``shadow`` in the background (blue-green preview).
        Its answer is measured and scored like any other, then dropped. Copies are
        skipped (and counted) when the gateway is past half its in-flight limit, so
        mirroring never costs the answered traffic its capacity."""
        if len(self._shadows) >= self.s.max_in_flight // 2:
            self.metrics.mirrored.labels(self.metrics.ns, llm_config, shadow.id, "skipped").inc()
            return
        self.metrics.mirrored.labels(self.metrics.ns, llm_config, shadow.id, "sent").inc()
        copy = request_as(creq, shadow, client_params, "-mirror")
        task = asyncio.create_task(self._shadow(copy, shadow, llm_config, headers))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(
        self, creq: ChatRequest, variant: Variant, llm_config: str, headers: Any
    ) -> None:
        started = time.perf_counter()
        try:
            result = await self._complete(creq, variant, llm_config)
        except ProviderError as exc:
            self._record_failure(exc, variant, llm_config, started, None)
            return
        self._succeeded(
            result,
            creq,
            variant,
            llm_config,
            f"chatcmpl-{creq.request_id}",
            started,
            headers.get(self.s.reference_header),
            None,
        )

    async def _complete(self, creq: ChatRequest, variant: Variant, llm_config: str) -> ChatResult:
        provider = self.provider(variant.provider)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(self.s.upstream_timeout):
                    return await provider.complete(dataclasses.replace(creq, attempt=attempt))
            except TimeoutError:
                err = ProviderError(
                    504,
                    "upstream_timeout",
                    f"{variant.provider} did not answer within {self.s.upstream_timeout:g}s",
                    retryable=True,
                )
            except ProviderError as exc:
                err = exc
            if not err.retryable or attempt >= self.s.max_attempts:
                raise err
            self.metrics.retries.labels(self.metrics.ns, llm_config, variant.id).inc()
            await asyncio.sleep(self._backoff(attempt, err.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = float(self.s.retry_backoff * 2.0 ** (attempt - 1) * (0.5 + self._rng.random()))
        if retry_after is not None:
            delay = max(delay, min(retry_after, 5.0))
        return delay

    async def _stream(
        self,
        request: web.Request,
        creq: ChatRequest,
        variant: Variant,
        llm_config: str,
        response_id: str,
        started: float,
        include_usage: bool,
        span: Any,
        reference: str | None,
        fallback_from: str | None = None,
    ) -> web.StreamResponse:
        provider = self.provider(variant.provider)
        attempt = 0
        while True:  # retry only until the first chunk; after that the client has bytes
            attempt += 1
            chunks = provider.stream(dataclasses.replace(creq, attempt=attempt))
            try:
                async with asyncio.timeout(self.s.upstream_timeout):
                    first = await anext(chunks)
                break
            except (TimeoutError, StopAsyncIteration, ProviderError) as exc:
                await chunks.aclose()  # type: ignore[attr-defined]
                err = (
                    exc
                    if isinstance(exc, ProviderError)
                    else ProviderError(
                        504 if isinstance(exc, TimeoutError) else 502,
                        "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_error",
                        f"{variant.provider} sent no first token",
                        retryable=True,
                    )
                )
                if not err.retryable or attempt >= self.s.max_attempts:
                    raise err from None
                self.metrics.retries.labels(self.metrics.ns, llm_config, variant.id).inc()
                await asyncio.sleep(self._backoff(attempt, err.retry_after))
        ttft = time.perf_counter() - started
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Request-Id": creq.request_id,
                "X-LLMOpt-Variant": variant.id,
                "X-LLMOpt-Config-Hash": variant.hash,
                **({"X-LLMOpt-Fallback-From": fallback_from} if fallback_from else {}),
            }
        )
        try:
            return await self._relay(
                request, resp, chunks, first, creq, variant, llm_config, response_id, started,
                include_usage, span, reference, ttft,
            )  # fmt: skip
        except ConnectionResetError:
            # The client went away mid-answer: counted once, not the variant's error, no
            # traceback; the upstream stream is closed (by _relay) so nothing keeps running.
            self.metrics.disconnects.labels(self.metrics.ns, llm_config, variant.id).inc()
            log.debug("request %s: client disconnected mid-stream", creq.request_id)
            if span is not None:
                span.set_attribute("error.type", "client_disconnected")
                span.end()
            return resp

    async def _relay(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        chunks: Any,
        first: Any,
        creq: ChatRequest,
        variant: Variant,
        llm_config: str,
        response_id: str,
        started: float,
        include_usage: bool,
        span: Any,
        reference: str | None,
        ttft: float,
    ) -> web.StreamResponse:
        """The answer's chunks, relayed to the client as server-sent events."""
        await resp.prepare(request)
        created = int(time.time())
        result: ChatResult | None = None
        chunk = first
        try:
            while True:
                if chunk.delta or chunk.tool_calls:
                    await resp.write(
                        self._sse(
                            chunk_body(
                                response_id, created, variant.model, chunk.delta or None,
                                tool_calls=chunk.tool_calls,
                            )
                        )
                    )  # fmt: skip
                if chunk.result is not None:
                    result = chunk.result
                    break
                async with asyncio.timeout(self.s.upstream_timeout):
                    chunk = await anext(chunks)
        except (TimeoutError, ProviderError, StopAsyncIteration) as exc:
            err = (
                exc
                if isinstance(exc, ProviderError)
                else ProviderError(504, "upstream_timeout", "upstream stalled mid-stream")
            )
            self._record_failure(err, variant, llm_config, started, span)
            await resp.write(self._sse(error_body(err.message, err.error_type)))
            await resp.write(b"data: [DONE]\n\n")
            return resp
        finally:
            await chunks.aclose()
        await resp.write(
            self._sse(chunk_body(response_id, created, variant.model, None, result.finish_reason))
        )
        if include_usage:
            await resp.write(
                self._sse(chunk_body(response_id, created, variant.model, None, result=result))
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        result.time_to_first_token = ttft
        self._succeeded(result, creq, variant, llm_config, response_id, started, reference, span)
        self._judge_against_stable(creq, variant, result, llm_config, None)
        return resp

    def _judge_against_stable(
        self,
        creq: ChatRequest,
        variant: Variant,
        result: ChatResult,
        llm_config: str,
        client_params: Parameters | None,
    ) -> None:
        """A candidate's answer, sent: maybe judged against stable's in the background."""
        table = self.config.table
        if self.pairwise is None or table is None or variant.role != "candidate":
            return
        stable = next((v for v in table.variant_set.variants if v.role == "stable"), None)
        self.pairwise.offer(creq, variant, result, stable, llm_config, client_params)

    @staticmethod
    def _sse(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def _succeeded(
        self,
        result: ChatResult,
        creq: ChatRequest,
        variant: Variant,
        llm_config: str,
        response_id: str,
        started: float,
        reference: str | None,
        span: Any,
    ) -> None:
        elapsed = time.perf_counter() - started
        series = self.metrics.series(
            self.metrics.ns, llm_config, variant.id, variant.provider, variant.model
        )
        series.duration_ok.observe(elapsed)
        series.input_tokens.observe(result.input_tokens)
        series.output_tokens.observe(result.output_tokens)
        if result.time_to_first_token is not None:
            series.ttft.observe(result.time_to_first_token)
        cost = self.pricing.cost(variant.model, result.input_tokens, result.output_tokens)
        if cost is None:
            self.metrics.unpriced.labels(
                self.metrics.ns, llm_config, variant.id, variant.model
            ).inc()
        else:
            series.cost.inc(cost)
        self.metrics.requests.labels(self.metrics.ns, llm_config, variant.id, "200").inc()
        key = (llm_config, variant.id)
        self._served[response_id] = self._served_keys.setdefault(key, key)
        if len(self._served) > self.s.feedback_capacity:
            self._served.popitem(last=False)
        prompt = prompt_text(creq.messages)
        self.evaluations.submit(
            Sample(
                response_id=response_id,
                llm_config=llm_config,
                variant=variant.id,
                prompt=prompt,
                response=result.text,
                finish_reason=result.finish_reason,
                reference=reference,
                ground_truth=result.ground_truth,
            )
        )
        self._record(result, variant, prompt, llm_config)
        if span is not None:
            span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
            span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
            span.set_attribute("gen_ai.response.id", response_id)
            span.end()
        if self.s.log_content:
            log.debug("response %s variant=%s text=%r", response_id, variant.id, result.text)
        else:
            log.debug(
                "request %s variant=%s status=200 %.1fms",
                creq.request_id,
                variant.id,
                elapsed * 1000,
            )

    def _record(self, result: ChatResult, variant: Variant, prompt: str, llm_config: str) -> None:
        """An answer to the recording (``--record``), labelled when it has ground truth."""
        if self.recorder is None:
            return
        correct = None if result.ground_truth is None else result.ground_truth >= 0.5
        self.recorder.record(
            prompt=prompt,
            model=variant.model,
            response=result.text,
            correct=correct,
            llm_config=llm_config,
            variant=variant.id,
            namespace=self.metrics.ns,
        )

    def _record_failure(
        self, err: ProviderError, variant: Variant, llm_config: str, started: float, span: Any
    ) -> None:
        self.metrics.duration.labels(
            self.metrics.ns,
            llm_config,
            variant.id,
            "chat",
            variant.provider,
            variant.model,
            err.error_type,
        ).observe(time.perf_counter() - started)
        self.metrics.requests.labels(self.metrics.ns, llm_config, variant.id, str(err.status)).inc()
        self.metrics.errors.labels(self.metrics.ns, llm_config, variant.id, err.error_type).inc()
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", err.error_type)
            span.set_status(Status(StatusCode.ERROR, err.message))
            span.end()

    def _upstream_failed(
        self,
        err: ProviderError,
        variant: Variant,
        llm_config: str,
        started: float,
        request_id: str,
        span: Any,
    ) -> web.Response:
        self._record_failure(err, variant, llm_config, started, span)
        log.warning(
            "request %s variant=%s failed: %s %s",
            request_id,
            variant.id,
            err.status,
            err.error_type,
        )
        headers = {"X-Request-Id": request_id, "X-LLMOpt-Variant": variant.id}
        if err.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
        return _error(err.status, err.message, err.error_type, headers=headers)


def server_options(settings: GatewaySettings) -> dict[str, Any]:
    """How the gateway's HTTP server is run (``web.run_app`` and ``web.AppRunner`` alike)."""
    return {"access_log": None, "keepalive_timeout": settings.idle_timeout}


def run(settings: GatewaySettings) -> None:
    """Serve until interrupted (uvloop when available)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    gateway = Gateway(settings)
    web.run_app(
        gateway.app(),
        host=settings.host,
        port=settings.port,
        print=lambda *_: None,
        **server_options(settings),
        handle_signals=True,
    )
