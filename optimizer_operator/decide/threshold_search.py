"""A router threshold's own search: bisection on the quality floor.

A router's threshold moves one thing mostly one way: a higher threshold sends more
requests to the strong model, so more quality and more cost. When cost is an objective
and quality has a floor, the threshold the search wants is the lowest that meets the
floor, and bisecting between the highest measured below it and the lowest measured at
or above it finds that within one step in about log2(range / step) trials, where a
general sampler over a 20-step range spends tens (``make bench-optimizer``, router
environment). The other parameters stay at the router's first measured point (its
screening) while the threshold is bisected; the sampler explores the rest afterwards.

The tendency is used to choose where to look, never as proof: the strong model is
sometimes wrong where the cheap one was right, so no candidate is refused on it, and
every point bisection proposes is measured by a canary like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optuna.distributions import FloatDistribution

from ..api.policy import OptimizationPolicySpec, TrialRecord
from .optimizer import MODEL, THRESHOLD, choice_key, distribution
from .trials import request_bounds_of

# Without a step in the range, bisection stops when the bracket is this share of it.
RESOLUTION = 1 / 32
_EPS = 1e-9


@dataclass(frozen=True)
class Bracket:
    """What the router's measured thresholds say about the floor at its other params."""

    key: str
    rest: dict[str, str]
    below: float | None  # the highest threshold measured below the floor
    below_quality: float | None
    above: float | None  # the lowest measured at or above it
    above_quality: float | None


def _searching(spec: OptimizationPolicySpec) -> tuple[float, FloatDistribution] | None:
    """The quality floor and the threshold's range, when this search applies: the space
    has a routerThreshold range, cost is minimized and quality has a floor."""
    ranges = [p for p in spec.search_space.parameters if p.name == THRESHOLD]
    cost_down = any(
        o.metric == "cost_per_request_usd" and o.direction == "minimize" for o in spec.objectives
    )
    floor = request_bounds_of(spec).get("quality_score")
    if not ranges or not cost_down or floor is None or floor[1]:
        return None
    d = distribution(ranges[0])
    return (floor[0], d) if isinstance(d, FloatDistribution) and not d.log else None


INCONCLUSIVE = float("-inf")  # a canary that could not show either side of the floor


def _measured(r: TrialRecord, key: str) -> float | None:
    """The quality a record measured for a point of router ``key`` (INCONCLUSIVE when its
    canary could show neither side of a bound: not shown at the floor, so the search looks
    above it), else None (not measured, a prediction, or another choice)."""
    if r.params.get(MODEL) != key or THRESHOLD not in r.params:
        return None
    if r.outcome == "Inconclusive":
        return INCONCLUSIVE
    if r.state != "Complete" or r.outcome == "PredictedInfeasible" or not r.metrics:
        return None
    q = r.metrics.get("quality_score")
    return None if q is None else float(q)


def _rest(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k != THRESHOLD}


def bracket(
    spec: OptimizationPolicySpec, records: Sequence[TrialRecord], key: str
) -> Bracket | None:
    """The bracket of router ``key`` at its first measured point's other params, or None
    before any is measured (screening measures the first)."""
    found = _searching(spec)
    if found is None:
        return None
    floor = found[0]
    points = [(r, q) for r in records if (q := _measured(r, key)) is not None]
    if not points:
        return None
    rest = _rest(points[0][0].params)
    at = [(float(r.params[THRESHOLD]), q) for r, q in points if _rest(r.params) == rest]
    above = min((p for p in at if p[1] >= floor), default=None)
    # Noise can measure a point below the floor above one that met it: the bracket is
    # below the lowest that met it.
    below = max(
        (p for p in at if p[1] < floor and (above is None or p[0] < above[0])), default=None
    )
    return Bracket(
        key,
        rest,
        None if below is None else below[0],
        None if below is None else below[1],
        None if above is None else above[0],
        None if above is None else above[1],
    )


def _snap(x: float, d: FloatDistribution) -> float:
    if d.step is None:
        return x
    return min(d.high, max(d.low, d.low + round((x - d.low) / d.step) * d.step))


def next_point(
    spec: OptimizationPolicySpec, records: Sequence[TrialRecord]
) -> tuple[dict[str, str], str] | None:
    """The next threshold to measure for the space's first router choice whose bracket is
    still wider than one step, with why; None when every bracket is closed (or this
    search does not apply)."""
    found = _searching(spec)
    if found is None:
        return None
    floor, d = found
    width = d.step if d.step is not None else (d.high - d.low) * RESOLUTION
    for key in (choice_key(m) for m in spec.search_space.models if m.router is not None):
        b = bracket(spec, records, key)
        if b is None:
            continue
        lo = b.below if b.below is not None else d.low
        hi = b.above if b.above is not None else d.high
        if b.below is None and b.above is None:
            continue
        if hi - lo <= width + _EPS and b.below is not None and b.above is not None:
            continue  # closed: the cheapest threshold at the floor is known to one step
        point = _snap((lo + hi) / 2, d)
        if abs(point - lo) < _EPS or abs(point - hi) < _EPS:
            # One step left at an end of the range: the end itself is the last to try.
            point = d.low if b.below is None else d.high if b.above is None else point
        tried = {
            float(r.params[THRESHOLD])
            for r in records
            if r.params.get(MODEL) == key and THRESHOLD in r.params and _rest(r.params) == b.rest
        }
        if any(abs(point - t) < _EPS for t in tried):
            continue  # measured, refused or inconclusive before: the sampler takes over
        params = {**b.rest, THRESHOLD: f"{point:.6g}"}
        return params, _why(b, floor, point)
    return None


def _why(b: Bracket, floor: float, point: float) -> str:
    def side(t: float | None, q: float | None, none: str) -> str:
        if t is None or q is None:
            return none
        return f"{t:g} (inconclusive)" if q == INCONCLUSIVE else f"{t:g} (quality {q:.3f})"

    return (
        f"router threshold search: {point:g}, between "
        f"{side(b.below, b.below_quality, 'the range low')} and "
        f"{side(b.above, b.above_quality, 'the range high')}, for the lowest threshold at "
        f"the quality floor {floor:g}"
    )
