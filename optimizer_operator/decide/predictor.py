"""Predict a proposed configuration's metrics from the trials measured so far.

A kernel regression in the search space: each finished trial's measured
metrics, weighted by ``exp(-d^2 / 2h^2)`` of its distance to the proposal
(numeric parameters scaled to [0, 1], a different model or category counting
as distance 1). The prediction's uncertainty combines the weighted spread of
the neighbours with how little evidence there is (the effective number of
neighbours). With no near neighbour the prediction says so: confidence low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..analysis.significance import normal_cdf, normal_sf
from ..api.policy import SearchSpace, TrialRecord
from .optimizer import param_distance

Confidence = Literal["high", "low"]


@dataclass(frozen=True)
class Predicted:
    mean: float
    stddev: float
    neighbours: float  # effective number of trials behind the prediction


@dataclass(frozen=True)
class Prediction:
    metrics: dict[str, Predicted]
    confidence: Confidence

    def summary(self) -> dict[str, str]:
        return {
            m: f"{p.mean:.4g} ± {p.stddev:.2g} (n≈{p.neighbours:.1f})"
            for m, p in self.metrics.items()
        }


def predict(
    space: SearchSpace,
    records: Sequence[TrialRecord],
    params: dict[str, str],
    *,
    bandwidth: float = 0.3,
    min_neighbours: float = 1.5,
    max_relative_sd: float = 0.15,
) -> Prediction:
    measured = [r for r in records if r.metrics and r.state == "Complete"]
    weights = [
        math.exp(-(param_distance(space, params, r.params) ** 2) / (2 * bandwidth**2))
        for r in measured
    ]
    out: dict[str, Predicted] = {}
    names = sorted({m for r in measured for m in r.metrics})
    for name in names:
        pairs = [
            (w, float(r.metrics[name]))
            for w, r in zip(weights, measured, strict=True)
            if name in r.metrics
        ]
        total = sum(w for w, _ in pairs)
        if total < 1e-6:
            continue
        mean = sum(w * v for w, v in pairs) / total
        spread = sum(w * (v - mean) ** 2 for w, v in pairs) / total
        n_eff = total**2 / sum(w * w for w, _ in pairs)
        # Evidence term: a single trial's value is uncertain by ~10% of its size.
        prior = (0.1 * abs(mean)) ** 2 / max(n_eff, 1e-6)
        out[name] = Predicted(mean, math.sqrt(spread + prior), total)
    confident = bool(out) and all(
        p.neighbours >= min_neighbours and p.stddev <= max_relative_sd * max(abs(p.mean), 1e-9)
        for p in out.values()
    )
    return Prediction(out, "high" if confident else "low")


def violation_probability(predicted: Predicted, bound: float, upper: bool) -> float:
    """P(metric > bound) when ``upper`` (a maximum), else P(metric < bound)."""
    if predicted.stddev <= 0:
        return float(predicted.mean > bound if upper else predicted.mean < bound)
    z = (predicted.mean - bound) / predicted.stddev
    return normal_cdf(z) if upper else normal_sf(z)


def violation_chance(
    prediction: Prediction,
    bounds: dict[str, tuple[float, bool]],
    *,
    min_neighbours: float = 0.5,
) -> float:
    """The highest chance that the config breaks one of ``bounds`` (metric -> (limit,
    upper)), counting only metrics predicted from at least half a near trial's worth of
    evidence: a prediction carried over from other models says too little to act on."""
    return max(
        (
            violation_probability(p, limit, upper)
            for metric, (limit, upper) in bounds.items()
            if (p := prediction.metrics.get(metric)) is not None and p.neighbours >= min_neighbours
        ),
        default=0.0,
    )


def confident_violation(predicted: Predicted, bound: float, upper: bool) -> bool:
    """Skip-worthy: a violation more likely than 90% with the evidence of at least one and
    a half near trials, or more likely than 99% with at least one near trial's worth."""
    chance = violation_probability(predicted, bound, upper)
    return (chance > 0.9 and predicted.neighbours >= 1.5) or (
        chance > 0.99 and predicted.neighbours >= 0.8
    )


# A larger answer budget never lowers an answer's quality (a cut answer is at best as
# good as the whole one) nor its cost: metric -> +1 (non-decreasing in maxTokens).
MONOTONE_IN_MAX_TOKENS = {"quality_score": 1, "cost_per_request_usd": 1}


def bounded_violation(
    records: Sequence[TrialRecord],
    params: dict[str, str],
    bounds: dict[str, tuple[float, bool]],
) -> tuple[TrialRecord, str] | None:
    """A measured trial that proves ``params`` breaks a bound, by monotonicity in
    maxTokens: the same config with a larger budget measured below a quality floor (a
    smaller budget can only do worse), or with a smaller budget measured above a cost cap.
    ``bounds``: metric -> (limit, upper). Predictions are not evidence: only trials that
    were measured (outcome not PredictedInfeasible) count."""
    if "maxTokens" not in params:
        return None
    mine = float(params["maxTokens"])
    rest = {k: v for k, v in params.items() if k != "maxTokens"}
    for r in records:
        if r.state != "Complete" or not r.metrics or r.outcome == "PredictedInfeasible":
            continue
        if "maxTokens" not in r.params:
            continue
        if {k: v for k, v in r.params.items() if k != "maxTokens"} != rest:
            continue
        theirs = float(r.params["maxTokens"])
        for metric, (limit, upper) in bounds.items():
            if metric not in r.metrics or metric not in MONOTONE_IN_MAX_TOKENS:
                continue
            value = float(r.metrics[metric])
            if not upper and theirs >= mine and value < limit:
                return r, (
                    f"{metric} at most {value:.4g} (trial {r.number} with maxTokens "
                    f"{r.params['maxTokens']} >= {params['maxTokens']}), bound {limit:g}"
                )
            if upper and theirs <= mine and value > limit:
                return r, (
                    f"{metric} at least {value:.4g} (trial {r.number} with maxTokens "
                    f"{r.params['maxTokens']} <= {params['maxTokens']}), bound {limit:g}"
                )
    return None
