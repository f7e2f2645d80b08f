"""Metrics per variant from Prometheus, through templated PromQL.

Templates use ``{{llm_config}}``, ``{{variant}}``, ``{{namespace}}`` and
``{{window}}``. Every failure to get a number (unreachable, timeout, error
answer, no series, NaN) raises :class:`MetricsUnavailable`, which callers turn
into a Hold: no decision is ever made on missing data.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, SSLError, Timeout
from urllib3.util.retry import Retry

from .prometheus_access import PrometheusAccess

SELECTOR = 'llm_config_namespace="{{namespace}}",llm_config="{{llm_config}}",variant="{{variant}}"'

# Built-in metrics: name -> (rate-style PromQL over {{window}}, direction).
BUILTIN: dict[str, tuple[str, str]] = {
    "latency_p95_seconds": (
        "histogram_quantile(0.95, sum by (le) (rate("
        # Successful requests only: failures end early and would pull the percentile down.
        "gen_ai_client_operation_duration_seconds_bucket{"
        + SELECTOR
        + ',error_type=""}[{{window}}])))',
        "lowerIsBetter",
    ),
    # Error series appear only with the first error, so no series means zero here; the
    # request count, checked first, proves the variant's data exists at all.
    "error_rate": (
        "(sum(rate(llmopt_errors_total{" + SELECTOR + "}[{{window}}])) or vector(0)) / "
        "sum(rate(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))",
        "lowerIsBetter",
    ),
    "cost_per_request_usd": (
        "sum(rate(llmopt_cost_usd_total{" + SELECTOR + "}[{{window}}])) / "
        "sum(rate(llmopt_requests_total{" + SELECTOR + ',status="200"}[{{window}}]))',
        "lowerIsBetter",
    ),
    "quality_score": (
        "sum(rate(llmopt_quality_score_sum{" + SELECTOR + "}[{{window}}])) / "
        "sum(rate(llmopt_quality_score_count{" + SELECTOR + "}[{{window}}]))",
        "higherIsBetter",
    ),
    # Pairwise judging against stable (the gateway's pairwise evaluator): the candidate's
    # mean pair score (a win 1, a tie 1/2, graded verdicts in between). Absolute (0.5: as
    # good as stable), so it is judged against a bound (min), not against stable's value.
    "win_rate": (
        "sum(rate(llmopt_pairwise_score_sum{" + SELECTOR + "}[{{window}}])) / "
        "sum(rate(llmopt_pairwise_score_count{" + SELECTOR + "}[{{window}}]))",
        "higherIsBetter",
    ),
    # The mean lexical similarity of the candidate's answers to stable's on the shadowed
    # pairs (1: the same words); a drift signal, judged against a bound (min).
    "stable_similarity": (
        "sum(rate(llmopt_stable_similarity_sum{" + SELECTOR + "}[{{window}}])) / "
        "sum(rate(llmopt_stable_similarity_count{" + SELECTOR + "}[{{window}}]))",
        "higherIsBetter",
    ),
}
# Requests of one variant over {{window}} (a count), and of the whole LLMConfig (a rate).
REQUESTS = "sum(increase(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))"
REQUESTS_RATE = (
    "sum(rate(llmopt_requests_total{"
    'llm_config_namespace="{{namespace}}",llm_config="{{llm_config}}"}[{{window}}]))'
)
# Cumulative counts for the sequential guardrail test: (events, total).
COUNTS: dict[str, tuple[str, str]] = {
    "error_rate": (
        "sum(increase(llmopt_errors_total{" + SELECTOR + "}[{{window}}])) or vector(0)",
        "sum(increase(llmopt_requests_total{" + SELECTOR + "}[{{window}}]))",
    ),
}
# The pair scores of pairwise judging, cumulative (analysis.bounds): their sum, their
# count, and their buckets (one per value a score can take, so the variance is exact).
# A confidence sequence on their mean is the sequential non-inferiority test of
# win_rate (a bound min 0.45: not worse than stable by more than 0.05).
PAIR_SCORE_SUM = "sum(increase(llmopt_pairwise_score_sum{" + SELECTOR + "}[{{window}}]))"
PAIR_SCORE_COUNT = "sum(increase(llmopt_pairwise_score_count{" + SELECTOR + "}[{{window}}]))"
PAIR_SCORE_BUCKETS = (
    "sum by (le) (increase(llmopt_pairwise_score_bucket{" + SELECTOR + "}[{{window}}]))"
)

# Evidence for absolute bounds (analysis.bounds), cumulative over {{window}} = the time
# since the candidate's traffic began: per-request counts and histogram buckets, so a
# confidence sequence sees every request rather than one window's mean.
QUALITY_SUM = "sum(increase(llmopt_quality_score_sum{" + SELECTOR + "}[{{window}}]))"
QUALITY_COUNTS = (
    "sum by (evaluator) (increase(llmopt_quality_score_count{" + SELECTOR + "}[{{window}}]))"
)
# Quality scores of one variant over {{window}}: is there a quality signal at all?
QUALITY_SCORES = (
    "sum(increase(llmopt_quality_score_count{" + SELECTOR + "}[{{window}}]))"
)
QUALITY_BUCKETS = (
    "sum by (le) (increase(llmopt_quality_score_bucket{" + SELECTOR + "}[{{window}}]))"
)
_QUALITY_TEMPLATES = frozenset(
    {BUILTIN["quality_score"][0], QUALITY_SUM, QUALITY_COUNTS, QUALITY_SCORES, QUALITY_BUCKETS}
)
LATENCY_BUCKETS = (
    "sum by (le) (increase(gen_ai_client_operation_duration_seconds_bucket{"
    + SELECTOR
    + ',error_type=""}[{{window}}]))'
)


def chosen_evaluators(template: str, weights: tuple[tuple[str, float], ...]) -> str:
    """A built-in quality template made of the chosen evaluators only: quality_score the
    weighted mean of each evaluator's mean over the window (over the evaluators with
    scores in it; a NaN mean, no scores, is dropped), the per-request evidence of the
    bounds filtered to them. Any other template, or no choice, is returned as it is."""
    if not weights or template not in _QUALITY_TEMPLATES:
        return template
    names = "|".join(name for name, _ in weights)
    # Every selector of these templates is a quality series' and ends with the variant.
    variant = 'variant="{{variant}}"'
    only = template.replace(variant, f'{variant},evaluator=~"{names}"')
    if template != BUILTIN["quality_score"][0]:
        return only
    sel = SELECTOR + f',evaluator=~"{names}"'
    means = (
        f"((sum by (evaluator) (rate(llmopt_quality_score_sum{{{sel}}}[{{{{window}}}}])) / "
        f"sum by (evaluator) (rate(llmopt_quality_score_count{{{sel}}}[{{{{window}}}}]))) >= 0)"
    )
    w = " or ".join(
        f'label_replace(vector({weight:g}), "evaluator", "{name}", "", "")'
        for name, weight in weights
    )
    return f"sum({means} * on (evaluator) ({w})) / sum(({w}) and on (evaluator) {means})"


# Built-in templates that can be asked for both variants of a comparison in one query.
_PAIRABLE = frozenset(
    {*(t for t, _ in BUILTIN.values()), *(t for pair in COUNTS.values() for t in pair), REQUESTS}
)
_VARIANT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_ZERO = " or vector(0)"


def by_variant(template: str, variants: tuple[str, ...]) -> tuple[str, bool] | None:
    """A built-in ``template`` asked for several ``variants`` in one query: every sum keeps
    the variant label and the selector matches any of them, so that a canary and its
    stable cost Prometheus one evaluation instead of two. Also whether a variant absent
    from the answer counts 0 (a template ending ``or vector(0)``: error series appear
    only with the first error). None for what it does not rewrite: the user's own
    templates, the chosen-evaluator quality mean, vector(0) inside an expression, ids
    that are not plain (they go into a regex)."""
    if template not in _PAIRABLE or not all(_VARIANT_ID.match(v) for v in variants):
        return None
    zero = template.endswith(_ZERO)
    body = template.removesuffix(_ZERO)
    if "vector(" in body or " by (" in body.replace("sum by (le) (", ""):
        return None
    grouped = (
        body.replace('variant="{{variant}}"', 'variant=~"{{variant}}"')
        .replace("sum by (le) (", "sum by (le, variant) (")
        .replace("sum(", "sum by (variant) (")
    )
    return grouped.replace("{{variant}}", "|".join(variants)), zero


class MetricsUnavailable(RuntimeError):
    """No trustworthy number could be had; the caller must hold, not decide."""


def render(template: str, *, llm_config: str, variant: str, namespace: str, window: str) -> str:
    """Fill a query template."""
    return (
        template.replace("{{llm_config}}", llm_config)
        .replace("{{variant}}", variant)
        .replace("{{namespace}}", namespace)
        .replace("{{window}}", window)
    )


class MetricSource(Protocol):
    """Where analysis gets numbers (Prometheus in production; tests may use another)."""

    def value(self, query: str) -> float: ...

    def series(
        self, query: str, seconds: float, step_seconds: float, end: datetime | None = None
    ) -> list[float]: ...

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]: ...

    def series_by(
        self, query: str, seconds: float, step_seconds: float, label: str
    ) -> dict[str, list[float]]: ...


_STATUS = re.compile(r"HTTP Status Code (\d{3})")
_RETRIED_STATUS = {502, 503, 504}


def _status_of(exc: PrometheusApiClientException) -> int | None:
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


class _FailedFast(Exception):
    """A try that failed at once and may be repeated: the reason, whether the server
    was unreachable (then the cooldown starts if the second try fails too), and the
    error to raise otherwise."""

    def __init__(
        self, reason: str, *, unreachable: bool = False, error: MetricsUnavailable | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.unreachable = reason, unreachable
        self.error = error or MetricsUnavailable(reason)


@dataclass
class PrometheusSource:
    """A Prometheus server, every call bounded by ``timeout`` seconds, reached with
    ``access`` (TLS verified by default, credentials, headers).

    A call that fails fast (connection refused or reset, 502/503/504) is tried once more
    when at most half the timeout has gone, so one query never takes much more than its
    timeout. When the server cannot be reached (refused, reset, timed out, TLS refused),
    calls in the next ``cooldown`` seconds fail at once with the same reason instead of
    each waiting out its own timeout: during an outage a tick holds in milliseconds, and
    the handler threads stay free for the work that needs no metrics. An error answer to
    one query (a bad PromQL) affects only that query; refused credentials and an
    untrusted certificate say so, and what to set."""

    url: str
    timeout: float = 10.0
    cooldown: float = 5.0
    access: PrometheusAccess = field(default_factory=PrometheusAccess)

    def __post_init__(self) -> None:
        self._client = PrometheusConnect(
            url=self.url,
            session=self.access.session(),
            retry=Retry(total=0, raise_on_status=False),  # retried here, within the timeout
            timeout=math.ceil(self.timeout),
        )
        self._down_until = 0.0
        self._down_reason = ""

    def _down(self, reason: str) -> MetricsUnavailable:
        self._down_reason = reason[:300]
        self._down_until = time.monotonic() + self.cooldown
        return MetricsUnavailable(f"Prometheus at {self.url}: {reason}")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self._down_until:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} unreachable less than {self.cooldown:g} s ago "
                f"({self._down_reason}); not asked again before then"
            )
        started = time.monotonic()
        try:
            return self._once(fn, *args, **kwargs)
        except _FailedFast as first:
            if time.monotonic() - started > self.timeout / 2:
                raise self._final(first) from None
        time.sleep(min(0.2, self.timeout / 10))
        try:
            return self._once(fn, *args, **kwargs)
        except _FailedFast as second:
            raise self._final(second) from None

    def _final(self, failed: _FailedFast) -> MetricsUnavailable:
        return self._down(failed.reason) if failed.unreachable else failed.error

    def _once(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SSLError as exc:
            raise self._down(
                f"TLS failed ({_short(exc)}): give the CA that signed its certificate "
                "(LLMOPT_PROMETHEUS_CA_FILE; chart prometheus.tls.caSecret)"
            ) from None
        except Timeout as exc:
            raise self._down(str(exc)) from None
        except RequestsConnectionError as exc:
            raise _FailedFast(str(exc), unreachable=True) from None
        except PrometheusApiClientException as exc:
            status = _status_of(exc)
            if status in (401, 403):
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} refused the credentials (HTTP {status}, "
                    f"{self.access.authenticated}): check them (chart prometheus.auth)"
                ) from None
            error = MetricsUnavailable(f"Prometheus at {self.url}: {exc}")
            if status in _RETRIED_STATUS:
                raise _FailedFast(str(exc), error=error) from None
            raise error from None
        except (RequestException, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url}: {exc}") from None

    def value(self, query: str) -> float:
        """The single value of an instant query."""
        result = self._call(
            self._client.custom_query, query, params={"timeout": f"{self.timeout:g}s"}
        )
        if not result:
            raise MetricsUnavailable(f"no data for {query}")
        if len(result) > 1:
            raise MetricsUnavailable(f"{len(result)} series for {query}; expected one")
        value = float(result[0]["value"][1])
        if not math.isfinite(value):
            raise MetricsUnavailable(f"no finite value for {query} (got {value})")
        return value

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query (labels, value); empty when there is none.
        A non-finite value raises MetricsUnavailable."""
        result = self._call(
            self._client.custom_query, query, params={"timeout": f"{self.timeout:g}s"}
        )
        out: list[tuple[dict[str, str], float]] = []
        for item in result or []:
            value = float(item["value"][1])
            if not math.isfinite(value):
                raise MetricsUnavailable(f"no finite value for {query} (got {value})")
            out.append((dict(item.get("metric") or {}), value))
        return out

    def series(
        self, query: str, seconds: float, step_seconds: float, end: datetime | None = None
    ) -> list[float]:
        """Finite values of a range query over ``seconds`` ending at ``end`` (default now);
        NaN points dropped."""
        result = self._range(query, seconds, step_seconds, end)
        if not result:
            return []
        if len(result) > 1:
            raise MetricsUnavailable(f"{len(result)} series for {query}; expected one")
        return _finite(result[0])

    def series_by(
        self, query: str, seconds: float, step_seconds: float, label: str
    ) -> dict[str, list[float]]:
        """A range query's series by the value of ``label`` (finite values, as
        ``series``); a label value with no series is absent."""
        result = self._range(query, seconds, step_seconds, None)
        out: dict[str, list[float]] = {}
        for item in result or []:
            key = str((item.get("metric") or {}).get(label, ""))
            if key in out:
                raise MetricsUnavailable(f"two series with {label}={key} for {query}")
            out[key] = _finite(item)
        return out

    def _range(
        self, query: str, seconds: float, step_seconds: float, end: datetime | None
    ) -> Any:
        end = end or datetime.now(UTC)
        return self._call(
            self._client.custom_query_range,
            query,
            start_time=end - timedelta(seconds=seconds),
            end_time=end,
            step=f"{step_seconds:g}s",
            params={"timeout": f"{self.timeout:g}s"},
        )


def _finite(item: dict[str, Any]) -> list[float]:
    values = [float(v) for _, v in item["values"]]
    return [v for v in values if math.isfinite(v)]


def _short(exc: Exception) -> str:
    """The telling part of a TLS error (requests wraps it three deep)."""
    text = str(exc)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname"):
        at = text.find(marker)
        if at >= 0:
            return text[at : at + 120].split("')")[0].rstrip("')\"")
    return text[:160]
