"""The operator's own significance tests against scipy.stats, the reference they replace
(scipy is imported here, in the tests, never by the operator)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from optimizer_operator.analysis import significance as sig


def _close(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return math.isclose(ours, theirs, rel_tol=1e-7, abs_tol=1e-12)


@pytest.mark.parametrize("z", [-40.0, -6.0, -1.96, -0.3, 0.0, 0.7, 1.6449, 5.0, 38.0])
def test_normal_tails(z: float) -> None:
    assert _close(sig.normal_sf(z), float(stats.norm.sf(z)))
    assert _close(sig.normal_cdf(z), float(stats.norm.cdf(z)))


@pytest.mark.parametrize("df", [0.7, 1.0, 2.5, 7.0, 30.0, 312.4, 5000.0, 1e6])
@pytest.mark.parametrize("t", [-12.0, -2.1, -0.2, 0.0, 0.05, 1.0, 2.58, 9.0, 60.0])
def test_student_t_tail(t: float, df: float) -> None:
    assert _close(sig.student_t_sf(t, df), float(stats.t.sf(t, df))), (t, df)


def _samples(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n1, n2 = int(rng.integers(2, 60)), int(rng.integers(2, 60))
    kind = rng.integers(0, 3)
    if kind == 0:  # continuous, shifted
        return rng.normal(0, 1, n1), rng.normal(float(rng.normal(0, 1)), 2, n2)
    if kind == 1:  # heavy ties (rounded scores)
        return np.round(rng.uniform(0, 1, n1), 1), np.round(rng.uniform(0.1, 1, n2), 1)
    return rng.lognormal(0, 1, n1), rng.lognormal(0.4, 1, n2)  # skewed, like latency


def test_welch_and_mann_whitney_match_scipy_on_random_samples() -> None:
    rng = np.random.default_rng(7)
    for _ in range(400):
        a, b = _samples(rng)
        welch = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        assert _close(sig.welch_p(a, b), welch), (a, b)
        mw = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        assert _close(sig.mann_whitney_p(a, b), mw), (a, b)


@pytest.mark.parametrize(
    ("n1", "n2"), [(1, 1), (2, 3), (3, 3), (5, 8), (8, 8), (8, 40), (3, 500), (9, 9)]
)
def test_mann_whitney_exact_distribution_for_small_samples(n1: int, n2: int) -> None:
    """Without ties and with a sample of at most 8, scipy uses the exact null distribution
    (a Gaussian binomial here); every possible U is checked, from extreme to central."""
    rng = np.random.default_rng(n1 * 100 + n2)
    for shift in np.linspace(-4, 4, 9):
        a = rng.normal(shift, 1, n1)
        b = rng.normal(0, 1, n2)
        ours = sig.mann_whitney_p(a, b)
        theirs = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        assert _close(ours, theirs), (n1, n2, shift, ours, theirs)


def test_edge_cases_follow_scipy() -> None:
    same = np.array([0.5, 0.5, 0.5])
    other = np.array([0.7, 0.7, 0.7])
    # Both constant: scipy says NaN or, from rounding in the mean of 0.7s, p = 1.5e-31.
    # Ours: certainly different (0), or nothing to test (NaN, read as "no evidence").
    assert sig.welch_p(same, other) == 0.0
    assert math.isnan(sig.welch_p(same, same.copy()))
    assert math.isnan(sig.welch_p(same[:1], other))
    assert _close(
        sig.mann_whitney_p(same, other),
        float(stats.mannwhitneyu(same, other, alternative="two-sided").pvalue),
    )
    assert sig.mann_whitney_p(same, same) == 1.0  # all tied: no evidence


def test_theil_sen_slope_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 3, 8, 25, 120):
        x = np.arange(n, dtype=float)
        y = 0.3 * x + rng.normal(0, 2, n)
        assert _close(sig.theil_sen_slope(y, x), float(stats.theilslopes(y, x)[0]))
    xs = np.array([0.0, 1.0, 1.0, 2.0])  # repeated x: those pairs have no slope
    ys = np.array([1.0, 2.0, 5.0, 3.0])
    assert _close(sig.theil_sen_slope(ys, xs), float(stats.theilslopes(ys, xs)[0]))


def test_the_operator_never_imports_scipy() -> None:
    """The point of this module: every handler loads without scipy (about 70 MB)."""
    code = (
        "import sys\n"
        "import optimizer_operator.handlers.llmconfig, optimizer_operator.handlers.rollout\n"
        "import optimizer_operator.handlers.policy, optimizer_operator.handlers.telemetry\n"
        "import optimizer_operator.cli.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'scipy', 'psycopg', "
        "'sqlalchemy'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
