"""The Prometheus reads of one OptimizationPolicy: the objective and constraint metrics
of a variant, its request count, the LLMConfig's daily request rate, and a metric's
series (for rules and the stable-anomaly check).

Every read raises :class:`MetricsUnavailable` when no trustworthy number can be had,
including when no Prometheus is configured at all (said once, here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..api.common import PAIRED_METRICS
from ..api.policy import OptimizationPolicySpec, request_bounds
from .prometheus import (
    BUILTIN,
    QUALITY_SCORES,
    REQUESTS,
    REQUESTS_RATE,
    MetricSource,
    MetricsUnavailable,
    chosen_evaluators,
    render,
)

QUALITY = "quality_score"

NO_PROMETHEUS = "no Prometheus configured (LLMOPT_PROMETHEUS_URL)"


def window_of(seconds: float) -> str:
    """A PromQL range of at least 10 s (shorter ranges hold too few scrapes)."""
    return f"{max(int(seconds), 10)}s"


@dataclass(frozen=True)
class PolicyMetrics:
    """Reads for ``spec.targetRef``'s variants in ``namespace``."""

    source: MetricSource | None
    spec: OptimizationPolicySpec
    namespace: str

    @property
    def configured(self) -> bool:
        return self.source is not None

    def _source(self) -> MetricSource:
        if self.source is None:
            raise MetricsUnavailable(NO_PROMETHEUS)
        return self.source

    def _query(self, template: str, variant: str, window: str) -> str:
        return render(
            template,
            llm_config=self.spec.target_ref.name,
            variant=variant,
            namespace=self.namespace,
            window=window,
        )

    def template(self, metric: str) -> str:
        """The policy's own query for ``metric``, else the built-in one."""
        custom = {m.name: m.query for m in self.spec.metrics}
        template = custom.get(metric) or chosen_evaluators(
            BUILTIN.get(metric, ("", ""))[0], self.evaluators()
        )
        if not template:
            raise MetricsUnavailable(f"no query for metric {metric}")
        return template

    def evaluators(self) -> tuple[tuple[str, float], ...]:
        """The evaluators that make quality_score (spec.quality, else the Rollout
        template's analysis.quality); empty: all of them."""
        return self.spec.quality_weights()

    def wanted(self) -> list[str]:
        """The objectives' metrics, then each per-request constraint's (and cost per
        request when a daily budget needs projecting), each once."""
        spec = self.spec
        wanted = [o.metric for o in spec.objectives]
        bounded = [c.metric for c, _ in request_bounds(spec.constraints)]
        if spec.constraints.max_daily_cost_usd is not None:
            bounded.append("cost_per_request_usd")
        return wanted + [m for m in dict.fromkeys(bounded) if m not in wanted]

    def values(self, variant: str, seconds: float, *, stable: bool = False) -> dict[str, float]:
        """Objective and constraint metrics of one variant over the last ``seconds``.
        ``stable``: the variant is stable itself, whose metrics against stable (win_rate,
        stable_similarity) are known, not read."""
        source = self._source()
        window = window_of(seconds)
        return {
            m: PAIRED_METRICS[m]
            if stable and m in PAIRED_METRICS
            else source.value(self._query(self.template(m), variant, window))
            for m in self.wanted()
        }

    def requests(self, variant: str, seconds: float) -> float:
        """Requests the variant served over the last ``seconds``."""
        return self._source().value(self._query(REQUESTS, variant, f"{int(seconds)}s"))

    def daily_requests(self, seconds: float) -> float | None:
        """The LLMConfig's request rate over the last ``seconds``, per day; None when it
        cannot be read."""
        try:
            rate = self._source().value(self._query(REQUESTS_RATE, "", window_of(seconds)))
        except MetricsUnavailable:
            return None
        return rate * 86400

    def series(
        self,
        metric: str,
        variant: str,
        *,
        span: float,
        step: float,
        window: str,
        builtin: bool = False,
    ) -> list[float]:
        """``metric`` of one variant over the last ``span`` seconds, every ``step`` (the
        built-in query when ``builtin``, whatever the policy defines)."""
        template = BUILTIN[metric][0] if builtin else self.template(metric)
        return self._source().series(self._query(template, variant, window), span, step)

    def needs_quality(self) -> bool:
        """An objective or constraint is judged on quality_score."""
        return QUALITY in self.wanted()

    def quality_scores(self, variant: str, seconds: float) -> float:
        """Quality scores the variant got over the last ``seconds`` (0 when none); with a
        quality_score query of the policy's own, 1 when it returns a series, else 0.
        Raises MetricsUnavailable only when Prometheus cannot answer."""
        window = window_of(seconds)
        custom = {m.name: m.query for m in self.spec.metrics}.get(QUALITY)
        # Only the chosen evaluators' scores count as a quality signal.
        scores = chosen_evaluators(QUALITY_SCORES, self.evaluators())
        found = self._source().vector(self._query(custom or scores, variant, window))
        if custom:
            return 1.0 if found else 0.0
        return sum(v for _, v in found)
