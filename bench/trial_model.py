"""A trial's canary as the operator runs it, request by request, for the benchmarks.

One trial walks the operator's default trial steps (10% of traffic for 3 analysis
intervals, then 50% for 3, then the policy's final gate) while a quality floor rides
as a critical rollback trigger. Each interval the candidate serves ``weight x
REQUESTS_PER_INTERVAL`` requests, each with its own quality score: graded scores
(Beta with concentration 20 around the true mean, the simulator's model) or
correct/incorrect (Bernoulli, a ground-truth label). Scores are put into the
gateway's 0.05-wide histogram buckets, as Prometheus would see them.

Two rules decide on the same streams:

* ``confident`` (the operator's, ``optimizer_operator.analysis``): after every interval,
  confidence sequences on all scores since the canary began; roll back when the
  false-rollback-rate interval is wholly below the floor, let a step pass (or the gate
  promote) only when the false-pass-rate interval is wholly above it, else stay at the
  current weight; undecided for ``MAX_UNDECIDED`` intervals after a step's measurements
  ends the trial ``inconclusive``.
* ``point`` (the operator before, and Argo Rollouts / Flagger thresholds): after every
  interval, the mean over the last window (5 intervals) against the floor once the
  window holds ``MIN_SAMPLE`` requests; roll back at the first reading below, pass
  when the steps are done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from optimizer_operator.analysis.confidence import (
    bounded_variance,
    decide,
    mean_interval,
    second_moment,
)

REQUESTS_PER_INTERVAL = 2000  # at 100% of traffic; one interval = one minute
STEPS = ((0.10, 3), (0.50, 3))  # (weight, analysis intervals), the operator's trial steps
WINDOW = 5  # intervals in the analysis window (5m at a 1m interval)
MIN_SAMPLE = 50
MAX_UNDECIDED = 20  # intervals (analysis.bounds.maxUndecided 20m)
FALSE_ROLLBACK, FALSE_PASS = 0.01, 0.05
EDGES = np.array([round(0.05 * i, 2) for i in range(1, 21)])
Kind = Literal["graded", "binary"]
Rule = Literal["confident", "point"]
Outcome = Literal["rolled_back", "passed", "inconclusive"]


@dataclass
class TrialRun:
    outcome: Outcome
    intervals: int  # to the verdict, counting the deciding interval
    share_intervals: float  # canary traffic: weight x intervals served
    requests: int  # canary requests served
    quality: float  # the candidate's measured mean quality (what the study is told)


def scores(rng: np.random.Generator, mean: float, n: int, kind: Kind) -> np.ndarray:
    if kind == "binary":
        return (rng.random(n) < mean).astype(float)
    m = min(max(mean, 1e-6), 1 - 1e-6)
    return rng.beta(m * 20.0, (1.0 - m) * 20.0, n)


@dataclass
class _Seen:
    """Running totals of the canary's scores: what Prometheus's counters hold."""

    n: int = 0
    total: float = 0.0
    cumulative: np.ndarray | None = None  # count <= each edge

    def add(self, batch: np.ndarray) -> None:
        counts = np.searchsorted(np.sort(batch), EDGES, side="right").astype(float)
        self.cumulative = counts if self.cumulative is None else self.cumulative + counts
        self.n += len(batch)
        self.total += float(batch.sum())

    @property
    def mean(self) -> float:
        return self.total / self.n

    def state(self, floor: float) -> str:
        """The operator's decision on the floor from these totals."""
        assert self.cumulative is not None
        buckets = [*zip(EDGES.tolist(), self.cumulative.tolist(), strict=True)]
        buckets.append((math.inf, float(self.n)))
        mean = self.mean
        sd = math.sqrt(bounded_variance(mean, second_moment(buckets), self.n))
        rollback = mean_interval(mean, sd, self.n, FALSE_ROLLBACK)
        passing = mean_interval(mean, sd, self.n, FALSE_PASS)
        return decide("min", floor, rollback, passing)


def run_trial(
    rng: np.random.Generator,
    true_quality: float,
    floor: float,
    kind: Kind,
    rule: Rule,
    first_weight: float = STEPS[0][0],
) -> TrialRun:
    """One trial from its first canary interval to its verdict."""
    steps = [(first_weight, STEPS[0][1]), *STEPS[1:]]
    seen = _Seen()
    recent: list[tuple[int, float]] = []  # (requests, score sum) per interval
    share = 0.0
    t = 0
    for weight, measurements in steps:
        done = waited = 0
        while True:
            t += 1
            batch = scores(rng, true_quality, max(1, round(weight * REQUESTS_PER_INTERVAL)), kind)
            seen.add(batch)
            recent = [*recent[-(WINDOW - 1) :], (len(batch), float(batch.sum()))]
            share += weight
            done += 1
            if rule == "point":
                n_window = sum(n for n, _ in recent)
                window_mean = sum(x for _, x in recent) / n_window
                if n_window >= MIN_SAMPLE and window_mean < floor:
                    return TrialRun("rolled_back", t, share, seen.n, window_mean)
                if done >= measurements:
                    break
                continue
            state = seen.state(floor) if seen.n >= MIN_SAMPLE else "undecided"
            if state == "violated":
                return TrialRun("rolled_back", t, share, seen.n, seen.mean)
            if done < measurements:
                continue
            if state == "holds":
                break
            waited += 1
            if waited > MAX_UNDECIDED:
                return TrialRun("inconclusive", t, share, seen.n, seen.mean)
    if rule == "point" and seen.mean < floor:
        # The policy's final gate before: the mean over the trial against the floor.
        return TrialRun("rolled_back", t, share, seen.n, seen.mean)
    return TrialRun("passed", t, share, seen.n, seen.mean)
