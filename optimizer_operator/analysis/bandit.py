"""Thompson sampling over a rollout's arms, on a normal posterior of each arm's reward.

Each arm's reward is the mean of its metric over the window with a standard
error from its per-interval samples; the chance that an arm is best is
estimated by drawing from every arm's posterior at once. Traffic follows those
chances, with a floor per arm so none is starved before the evidence is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .canary import Direction


@dataclass(frozen=True)
class ArmReward:
    mean: float
    se: float
    requests: float


def chance_best(
    rewards: Mapping[str, ArmReward], direction: Direction, seed: int, draws: int = 20000
) -> dict[str, float]:
    """P(best) per arm by Monte Carlo over independent normal posteriors."""
    ids = sorted(rewards)
    rng = np.random.default_rng(seed)
    means = np.array([rewards[i].mean for i in ids])
    ses = np.array([max(rewards[i].se, 1e-12) for i in ids])
    samples = rng.normal(means, ses, size=(draws, len(ids)))
    best = samples.argmax(axis=1) if direction == "higherIsBetter" else samples.argmin(axis=1)
    counts = np.bincount(best, minlength=len(ids))
    return {i: float(c) / draws for i, c in zip(ids, counts, strict=True)}


def allocate(chances: Mapping[str, float], min_weight: int) -> dict[str, int]:
    """Integer percents summing to 100: ``min_weight`` each, the rest by chance of being
    best (largest remainders get the leftover points)."""
    ids = sorted(chances)
    floor = min(min_weight, 100 // len(ids))
    spare = 100 - floor * len(ids)
    raw = {i: spare * chances[i] for i in ids}
    out = {i: floor + int(raw[i]) for i in ids}
    left = 100 - sum(out.values())
    for i in sorted(ids, key=lambda k: (raw[k] - int(raw[k]), k), reverse=True)[:left]:
        out[i] += 1
    return out
