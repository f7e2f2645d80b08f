"""How good a router is, in the measures RouteLLM reports.

A router's scores rank the requests; sending the k lowest-scored (least likely to be
answered well by the cheap model) to the strong model gives a quality q(k) at a strong
share k/n. From that curve: PGR(k) = (q(k) - q_cheap) / (q_strong - q_cheap), the
share of the quality gap recovered; APGR, its area over shares 0..1; CPT(p), the
smallest strong share that recovers p of the gap; and the strong share (and cost) that
reaches 95% of the strong model's quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Quality and cost at each strong share 0/n .. n/n."""

    quality: np.ndarray  # n + 1 values
    cost: np.ndarray  # n + 1 values, USD for all n requests

    @property
    def n(self) -> int:
        return len(self.quality) - 1

    def pgr(self) -> np.ndarray:
        weak, strong = self.quality[0], self.quality[-1]
        return np.asarray((self.quality - weak) / (strong - weak))

    def apgr(self) -> float:
        return float(np.trapezoid(self.pgr(), dx=1.0 / self.n))

    def cpt(self, recovered: float) -> float:
        """The smallest strong share whose PGR reaches ``recovered``."""
        return float(np.argmax(self.pgr() >= recovered - 1e-12) / self.n)

    def share_for(self, of_strong: float) -> float:
        """The smallest strong share whose quality reaches ``of_strong`` x strong's."""
        reached = self.quality >= of_strong * self.quality[-1] - 1e-12
        return float(np.argmax(reached) / self.n)

    def cost_at(self, share: float) -> float:
        return float(self.cost[round(share * self.n)])


def curve(
    scores: np.ndarray,
    cheap_good: np.ndarray,
    strong_good: np.ndarray,
    cheap_cost: np.ndarray,
    strong_cost: np.ndarray,
    *,
    cascade: bool = False,
) -> Curve:
    """The quality/cost curve of routing by ``scores`` (low = send to strong). A cascade
    always pays the cheap call and adds the strong one for the requests it escalates."""
    order = np.argsort(scores, kind="mergesort")
    gain = (strong_good.astype(float) - cheap_good.astype(float))[order]
    quality = np.concatenate([[0.0], np.cumsum(gain)]) + cheap_good.sum()
    extra = (strong_cost if cascade else strong_cost - cheap_cost)[order]
    cost = np.concatenate([[0.0], np.cumsum(extra)]) + cheap_cost.sum()
    return Curve(quality / len(scores), cost)


def random_curve(
    cheap_good: np.ndarray, strong_good: np.ndarray, cheap_cost: np.ndarray, strong_cost: np.ndarray
) -> Curve:
    """The expectation of a random router (a fixed split): quality and cost linear in
    the strong share."""
    n = len(cheap_good)
    share = np.arange(n + 1) / n
    quality = cheap_good.mean() + share * (strong_good.mean() - cheap_good.mean())
    cost = cheap_cost.sum() + share * (strong_cost.sum() - cheap_cost.sum())
    return Curve(quality, cost)


def oracle_scores(cheap_good: np.ndarray, strong_good: np.ndarray) -> np.ndarray:
    """Scores that send to strong exactly the requests only strong answers well."""
    return np.where(strong_good & ~cheap_good, 0.0, 1.0)
