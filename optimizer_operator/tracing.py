"""W3C trace context and optional OTLP span export with GenAI attributes.

The incoming ``traceparent``/``tracestate`` are always forwarded upstream.
Spans are exported only when an OTLP endpoint is configured, so the default
costs nothing on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRACE_HEADERS = ("traceparent", "tracestate")


def forwarded_trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {h: headers[h] for h in TRACE_HEADERS if h in headers}


class Tracer:
    """Wraps the OpenTelemetry SDK; created only when an endpoint is set."""

    def __init__(self, endpoint: str, service_name: str = "llm-optimizer-gateway") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5), schedule_delay_millis=500)
        )
        self.tracer = self.provider.get_tracer("optimizer_operator.gateway")
        self.propagator = TraceContextTextMapPropagator()

    def start(self, headers: Mapping[str, str], model: str, attributes: dict[str, Any]) -> Any:
        from opentelemetry.trace import SpanKind

        context = self.propagator.extract(carrier=dict(headers))
        return self.tracer.start_span(
            f"chat {model}", context=context, kind=SpanKind.CLIENT, attributes=attributes
        )

    def span(self, name: str, attributes: dict[str, Any] | None = None) -> Any:
        """A context manager for an internal span (a control-loop phase), nested under
        the current one."""
        return self.tracer.start_as_current_span(name, attributes=attributes or {})

    def inject(self, span: Any) -> dict[str, str]:
        """Headers that continue ``span``'s trace upstream."""
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def shutdown(self) -> None:
        self.provider.shutdown()


def genai_attributes(
    *,
    provider: str,
    model: str,
    temperature: str | None,
    top_p: str | None,
    max_tokens: int | None,
    llm_config: str,
    variant: str,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "llmopt.llm_config": llm_config,
        "llmopt.variant": variant,
    }
    if temperature is not None:
        attrs["gen_ai.request.temperature"] = float(temperature)
    if top_p is not None:
        attrs["gen_ai.request.top_p"] = float(top_p)
    if max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    return attrs
