"""The gateway's Prometheus metrics.

Duration and token usage follow the OpenTelemetry GenAI semantic conventions
(``gen_ai_client_operation_duration_seconds``, ``gen_ai_client_token_usage``
with ``gen_ai_operation_name``, ``gen_ai_provider_name``,
``gen_ai_request_model``, ``gen_ai_token_type``); the rest is ours under
``llmopt_``. Every per-request series carries ``llm_config_namespace``, ``llm_config``
and ``variant`` (``llm_config_namespace``, not ``namespace``: scrape configs set
``namespace`` to the pod's own, which would rename ours to ``exported_namespace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    disable_created_metrics,
)

# `_created` series double the series count and no query of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Geometric buckets 2^(1/3) (~26%) apart from 10 ms to 5 min: OTel's advice for
# gen_ai.client.operation.duration doubles each step, too coarse for canary analysis to
# see a 10-30% shift in a percentile (histogram_quantile interpolates within a bucket).
DURATION_BUCKETS = (*(round(0.01 * 2 ** (i / 3), 5) for i in range(45)), 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 30.0, 60.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
QUALITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
# Every value a pairwise pair score can take (means over one or two orders of a verdict
# worth a multiple of 1/8: multiples of 1/16), one bucket each.
PAIR_SCORE_BUCKETS = tuple(i / 16 for i in range(17))

VARIANT = ("llm_config_namespace", "llm_config", "variant")
GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")


@dataclass
class _VariantSeries:
    duration_ok: Any
    ttft: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any


class GatewayMetrics:
    """All gateway metrics in one registry (one per gateway, so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (OTel GenAI semantic conventions).",
            (*VARIANT, *GENAI, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per operation (OTel GenAI).",
            (*VARIANT, *GENAI, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llmopt_time_to_first_token_seconds",
            "Time to the first output token.",
            (*VARIANT, "gen_ai_request_model"),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "llmopt_requests",
            "Requests answered, by HTTP status.",
            (*VARIANT, "status"),
            registry=r,
        )
        self.errors = Counter(
            "llmopt_errors", "Failed requests by error type.", (*VARIANT, "error_type"), registry=r
        )
        self.cost = Counter(
            "llmopt_cost_usd",
            "Cost in USD from the pricing catalog.",
            (*VARIANT, "gen_ai_request_model"),
            registry=r,
        )
        self.unpriced = Counter(
            "llmopt_unpriced_requests",
            "Requests whose model has no price in the catalog.",
            (*VARIANT, "gen_ai_request_model"),
            registry=r,
        )
        self.quality = Histogram(
            "llmopt_quality_score",
            "Quality scores on a 0-1 scale, by evaluator.",
            (*VARIANT, "evaluator"),
            buckets=QUALITY_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            "llmopt_evaluations",
            "Evaluations by evaluator and outcome.",
            ("evaluator", "outcome"),
            registry=r,
        )
        self.eval_dropped = Counter(
            "llmopt_evaluations_dropped",
            "Evaluations dropped because the queue was full.",
            ("evaluator",),
            registry=r,
        )
        self.feedback = Counter("llmopt_feedback", "Human feedback received.", VARIANT, registry=r)
        self.pairwise = Counter(
            "llmopt_pairwise",
            "Pairwise verdicts on a candidate's answer against stable's answer to the same "
            "request (judged blind, in both orders or one drawn at random): win, loss or tie for "
            "the candidate (its pair score above, below or at 1/2).",
            (*VARIANT, "baseline", "outcome"),
            registry=r,
        )
        self.pairwise_score = Histogram(
            "llmopt_pairwise_score",
            "A candidate's score per judged pair against stable (0-1; 1/2 as good as stable): "
            "the mean over the orders judged of the judge's grade for the candidate's answer. "
            "Its mean is the win rate.",
            (*VARIANT, "baseline"),
            buckets=PAIR_SCORE_BUCKETS,
            registry=r,
        )
        self.pairwise_first = Summary(
            "llmopt_pairwise_first_answer_score",
            "The judge's score for whichever answer it was shown first (0-1), per judge call: "
            "a mean above 1/2 is a preference for the first position (the orders cancel it "
            "in the win rate, but it shrinks the win rate toward 1/2).",
            ("llm_config_namespace", "llm_config"),
            registry=r,
        )
        self.stable_similarity = Histogram(
            "llmopt_stable_similarity",
            "Lexical similarity (0-1) of a candidate's answer to stable's answer to the same "
            "request, on the pairs pairwise judging shadows: a reference-free drift signal.",
            (*VARIANT, "baseline"),
            buckets=QUALITY_BUCKETS,
            registry=r,
        )
        self.pairwise_skipped = Counter(
            "llmopt_pairwise_skipped",
            "Sampled pairs not judged, by reason (spend_cap, busy, shadow_error, "
            "judge_error, judge_garbage).",
            ("llm_config_namespace", "llm_config", "reason"),
            registry=r,
        )
        self.evaluation_cost = Counter(
            "llmopt_evaluation_cost_usd",
            "What evaluation cost, apart from any variant's cost per request: the shadow "
            "calls to stable and the judge's calls.",
            ("llm_config_namespace", "llm_config", "evaluator", "kind"),
            registry=r,
        )
        self.retries = Counter(
            "llmopt_upstream_retries", "Upstream attempts retried.", (*VARIANT,), registry=r
        )
        self.router_decisions = Counter(
            "llmopt_router_decisions",
            "A router variant's requests by the configuration that answered (cheap, strong).",
            (*VARIANT, "target"),
            registry=r,
        )
        self.fallbacks = Counter(
            "llmopt_fallbacks",
            "Requests of this (candidate) variant that failed after their retries and were "
            "answered by stable (--fallback-to-stable).",
            (*VARIANT,),
            registry=r,
        )
        self.weight = Gauge(
            "llmopt_variant_weight",
            "Live weight of each variant in basis points.",
            (*VARIANT, "role", "config_hash"),
            registry=r,
        )
        self.config_reloads = Counter(
            "llmopt_gateway_config_reloads",
            "Variant config reloads by result.",
            ("result",),
            registry=r,
        )
        self.rejected = Counter(
            "llmopt_gateway_rejected",
            "Requests refused before routing, by reason.",
            ("reason",),
            registry=r,
        )
        self.mirrored = Counter(
            "llmopt_gateway_mirrored",
            "Requests copied to a mirror variant, by result (sent, skipped when the "
            "gateway is busy).",
            (*VARIANT, "result"),
            registry=r,
        )
        self.disconnects = Counter(
            "llmopt_client_disconnects",
            "Streamed answers the client dropped before their end (not the variant's error).",
            VARIANT,
            registry=r,
        )
        self._series: dict[tuple[str, str, str, str, str], _VariantSeries] = {}
        # The namespace of the LLMConfig served (one per gateway), from its VariantSet.
        self.ns = ""

    def series(
        self, namespace: str, llm_config: str, variant: str, provider: str, model: str
    ) -> _VariantSeries:
        """Pre-resolved children for one variant (label lookups off the hot path)."""
        key = (namespace, llm_config, variant, provider, model)
        s = self._series.get(key)
        if s is None:
            genai = (namespace, llm_config, variant, "chat", provider, model)
            s = _VariantSeries(
                duration_ok=self.duration.labels(*genai, ""),
                ttft=self.ttft.labels(namespace, llm_config, variant, model),
                input_tokens=self.tokens.labels(*genai, "input"),
                output_tokens=self.tokens.labels(*genai, "output"),
                cost=self.cost.labels(namespace, llm_config, variant, model),
            )
            self._series[key] = s
        return s

    def set_weights(
        self, namespace: str, llm_config: str, variants: list[tuple[str, str, str, int]]
    ) -> None:
        """Publish live weights; variants no longer live are removed."""
        self.ns = namespace
        self.weight.clear()
        for variant_id, role, config_hash, weight in variants:
            self.weight.labels(namespace, llm_config, variant_id, role, config_hash).set(weight)
