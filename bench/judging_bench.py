"""``make bench-judging``: judge calls needed to detect a 5-point quality drop, pairwise
against stable vs two absolute judge scores, at the same false-rollback rate.

The world (every number below is a flag):

* Each request's prompt has a difficulty shared by every configuration that answers
  it; each answer has its own luck on top. An answer's true quality is
  ``Phi(mu + h + e)`` with ``h ~ N(0, rho)`` (the prompt) and ``e ~ N(0, 1 - rho)`` (the
  answer): ``rho`` is the correlation of two configurations' answer quality on the same
  prompt. Stable's mean quality is 0.80, the candidate's 0.75 (the drop) or 0.80 (A/A
  runs, for the false-rollback rate).
* The judge sees an answer's quality with noise (``--judge-noise``, per answer and per
  call). **Absolute**: it scores one answer, on 0-10 (``absolute``) or on 1-5 as the
  gateway's ``llm_judge`` asks (``absolute-1-5``), its perception rounded: LLM judges'
  absolute scores bunch on a few values. Stable's and the candidate's scored requests
  are different requests, as a traffic split serves them; one judge call per score,
  half the calls on each side. **Pairwise** (the gateway's evaluator ``pairwise``): the
  candidate's and stable's answers to the *same* request, judged by a judge that
  prefers the first answer regardless with probability ``--bias``, on one of the
  gateway's scales: graded (five points: much better, better, as good, worse, much
  worse; "much" past ``--strong-margin``, ties under ``--tie-margin``; a biased call
  says "A>B"), winner (A, B or tie; a biased call says "A") or scores (both answers
  scored 1-5 side by side in one call; a biased call puts A above B). Each pair is
  judged in both orders (two judge calls, the gateway's default) or once in an order
  drawn at random (``orders: 1``), and scored by the gateway's own rule
  (``gateway.pairwise.pair_score``: the mean of the candidate's scores over the orders
  judged). Pairwise also costs one shadow call to stable per pair (reported beside, not
  a judge call).
* Both methods are decided by the same anytime-valid test the operator uses for a
  mean (the normal-mixture mSPRT, ``analysis.canary.msprt_log_lambda``) with its
  variance estimated from the data, checked every ``--look`` judge calls; each method's
  mixing scale is set to its own true effect (the best case for both), and each
  method's threshold is calibrated on A/A runs so that exactly ``--false-rollback`` of
  them roll back within the horizon. Detection is compared at that equal rate.

One pairwise call sees both answers where absolute scores need a call each (at best
half the calls); the share of difficulty the prompt carries decides how much pairing
adds: with ``rho = 0`` nothing cancels, and a verdict that keeps less of each difference
than a score, or a second order to cancel a bias, can need more calls. The rows sweep
``rho``; the GSM8K row uses the correlation measured on the two real models of
``../shared/data/gsm8k_responses.csv`` (tetrachoric, on their correct/incorrect
labels), when that file is present.
Results: bench/results/judging.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from optimizer_operator.analysis.canary import msprt_log_lambda
from optimizer_operator.gateway.pairwise import GRADE_SCORE, WINNER_SCORE
from optimizer_operator.gateway.similarity import similarity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_responses.csv"
STABLE_Q, DROP = 0.80, 0.05
METHODS = (
    "absolute", "absolute-1-5", "pairwise", "pairwise-one-order", "pairwise-winner",
    "pairwise-winner-one-order", "pairwise-scores", "pairwise-scores-one-order",
)  # fmt: skip


@dataclass(frozen=True)
class World:
    rho: float  # correlation of two configurations' answer quality on one prompt
    judge_noise: float
    bias: float
    tie_margin: float
    leniency: float = 0.0  # sd of the judge's per-prompt offset on every answer's score
    strong_margin: float = 0.15  # a graded verdict's "much better" past this difference


def _mu(target: float) -> float:
    """The probit location giving mean quality ``target`` (latent variance 1 + 1)."""
    return float(stats.norm.ppf(target) * math.sqrt(2.0))


def _quality(rng: np.random.Generator, h: np.ndarray, world: World, mean: float) -> np.ndarray:
    e = rng.normal(0.0, math.sqrt(1.0 - world.rho), h.shape)
    return np.asarray(stats.norm.cdf(_mu(mean) + h + e))


def absolute_scores(
    rng: np.random.Generator, world: World, mean: float, shape: tuple[int, int], steps: int = 10
) -> np.ndarray:
    """One judge call's score (as 0..1) of answers of fresh prompts, on a scale of
    ``steps`` + 1 points: 0-10, or 1-5 (the gateway's ``llm_judge``) with 4."""
    h = rng.normal(0.0, math.sqrt(world.rho), shape)
    lenient = rng.normal(0.0, world.leniency, shape)
    seen = _quality(rng, h, world, mean) + lenient + rng.normal(0.0, world.judge_noise, shape)
    return np.clip(np.round(seen * steps), 0.0, steps) / steps


# The first answer's score for each verdict code, per scale: graded codes 0..4 are
# A>>B, A>B, A=B, B>A, B>>A; winner codes 0..2 are A, tie, B (the gateway's tables).
FIRST_SCORE = {
    "graded": np.array([GRADE_SCORE[v] for v in ("A>>B", "A>B", "A=B", "B>A", "B>>A")]),
    "winner": np.array([WINNER_SCORE[v] for v in ("A", "tie", "B")]),
}
BIASED = {"graded": 1, "winner": 0}  # what a judge preferring the first answer says


def _first_score(
    rng: np.random.Generator, first: np.ndarray, second: np.ndarray, world: World, scale: str
) -> np.ndarray:
    """One judge call on (first, second): the first answer's score."""
    d = (first + rng.normal(0.0, world.judge_noise, first.shape)) - (
        second + rng.normal(0.0, world.judge_noise, first.shape)
    )
    m, strong = world.tie_margin, world.strong_margin
    if scale == "graded":
        code = np.where(d > strong, 0, np.where(d > m, 1, np.where(d >= -m, 2,
                        np.where(d >= -strong, 3, 4))))  # fmt: skip
    else:
        code = np.where(d > m, 0, np.where(d < -m, 2, 1))
    code = np.where(rng.random(first.shape) < world.bias, BIASED[scale], code)
    return np.asarray(FIRST_SCORE[scale][code])


def _side_by_side(
    rng: np.random.Generator, first: np.ndarray, second: np.ndarray, world: World
) -> np.ndarray:
    """One judge call scoring both answers 1-5 (``scale: scores``): the first answer's
    score (4 + a - b) / 8 (``gateway.pairwise.first_score``); a biased call scores the
    first above the second whatever they are."""
    a, b = (
        np.clip(np.round((x + rng.normal(0.0, world.judge_noise, x.shape)) * 4.0), 0, 4) + 1
        for x in (first, second)
    )
    biased = rng.random(first.shape) < world.bias
    a, b = (
        np.where(biased, np.where(b < 5, np.maximum(a, b + 1), 5), a),
        np.where(biased, np.minimum(b, 4), b),
    )
    return (4.0 + a - b) / 8.0


def _pair(
    rng: np.random.Generator, world: World, mean: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's and stable's answer quality on the same prompts (the judge's
    per-prompt leniency is shared by both, so it cancels in a comparison)."""
    h = rng.normal(0.0, math.sqrt(world.rho), shape)
    lenient = rng.normal(0.0, world.leniency, shape)
    return (
        _quality(rng, h, world, mean) + lenient,
        _quality(rng, h, world, STABLE_Q) + lenient,
    )


def judged_scores(
    rng: np.random.Generator, world: World, mean: float, shape: tuple[int, int],
    scale: str, orders: int,
) -> np.ndarray:  # fmt: skip
    """The candidate's pair score per pair, by the gateway's rule
    (``gateway.pairwise.pair_score``: the mean of its own score over the orders judged):
    both orders, or one drawn at random."""
    cand, stab = _pair(rng, world, mean, shape)

    def call(first: np.ndarray, second: np.ndarray) -> np.ndarray:  # A's score
        if scale == "scores":
            return _side_by_side(rng, first, second, world)
        return _first_score(rng, first, second, world, scale)

    if orders == 2:
        return (call(cand, stab) + 1.0 - call(stab, cand)) / 2.0
    flip = rng.random(shape) < 0.5
    a_score = call(np.where(flip, stab, cand), np.where(flip, cand, stab))
    return np.where(flip, 1.0 - a_score, a_score)


JUDGED = {
    "pairwise": ("graded", 2),
    "pairwise-one-order": ("graded", 1),
    "pairwise-winner": ("winner", 2),
    "pairwise-winner-one-order": ("winner", 1),
    "pairwise-scores": ("scores", 2),
    "pairwise-scores-one-order": ("scores", 1),
}
ABSOLUTE = {"absolute": 10, "absolute-1-5": 4}  # steps of the judge's scale: 0-10, 1-5


def _log_lambda(diff: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    out = np.full(diff.shape, -np.inf)
    ok = diff > 0
    v = np.maximum(variance[ok], 1e-12)
    out[ok] = [msprt_log_lambda(float(d), float(x), tau) for d, x in zip(diff[ok], v, strict=True)]
    return out


def _cum_mean_var(x: np.ndarray, looks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean and variance of each row at the sample sizes ``looks``."""
    s1 = np.cumsum(x, axis=1)[:, looks - 1]
    s2 = np.cumsum(x * x, axis=1)[:, looks - 1]
    n = looks[None, :].astype(float)
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0) * n / np.maximum(n - 1.0, 1.0)
    return mean, var


def absolute_evidence(
    rng: np.random.Generator, world: World, mean: float, runs: int, calls: int, look: int,
    tau: float, steps: int = 10,
) -> np.ndarray:
    """log Lambda (stable better than the candidate) at each look, per run."""
    per_side = calls // 2
    looks = np.arange(look // 2, per_side + 1, look // 2)
    c = absolute_scores(rng, world, mean, (runs, per_side), steps)
    s = absolute_scores(rng, world, STABLE_Q, (runs, per_side), steps)
    cm, cv = _cum_mean_var(c, looks)
    sm, sv = _cum_mean_var(s, looks)
    n = looks[None, :].astype(float)
    return _log_lambda((sm - cm).ravel(), ((cv + sv) / n).ravel(), tau).reshape(cm.shape)


def pairwise_evidence(
    rng: np.random.Generator, world: World, mean: float, runs: int, calls: int, look: int,
    tau: float, method: str = "pairwise",
) -> np.ndarray:
    """log Lambda (the candidate loses more than it wins) at each look, per run."""
    scale, per_call = JUDGED[method]
    pairs = calls // per_call
    looks = np.arange(look // per_call, pairs + 1, look // per_call)
    o = judged_scores(rng, world, mean, (runs, pairs), scale, per_call)
    om, ov = _cum_mean_var(o, looks)
    n = looks[None, :].astype(float)
    return _log_lambda((0.5 - om).ravel(), (ov / n).ravel(), tau).reshape(om.shape)


def true_effect(method: str, world: World, seed: int) -> float:
    """The drop as each method sees it: stable minus candidate mean score (absolute), or
    1/2 minus the candidate's win rate (pairwise)."""
    rng = np.random.default_rng(seed)
    shape = (1, 400_000)
    if method in ABSOLUTE:
        steps = ABSOLUTE[method]
        return float(
            absolute_scores(rng, world, STABLE_Q, shape, steps).mean()
            - absolute_scores(rng, world, STABLE_Q - DROP, shape, steps).mean()
        )
    scale, orders = JUDGED[method]
    return float(0.5 - judged_scores(rng, world, STABLE_Q - DROP, shape, scale, orders).mean())


def detect(
    method: str, world: World, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Calibrate on A/A runs, then measure judge calls to detection under the drop."""
    effect = true_effect(method, world, seed)
    tau = max(effect, 1e-3)

    def evidence(rng: np.random.Generator, mean: float) -> np.ndarray:
        if method in ABSOLUTE:
            return absolute_evidence(
                rng, world, mean, args.runs, args.horizon, args.look, tau, ABSOLUTE[method]
            )
        return pairwise_evidence(
            rng, world, mean, args.runs, args.horizon, args.look, tau, method
        )

    null = evidence(np.random.default_rng(seed + 1), STABLE_Q)
    peak = null.max(axis=1)  # the strongest evidence each A/A run ever showed
    threshold = float(np.quantile(peak, 1.0 - args.false_rollback))
    threshold = max(threshold, 0.0)
    alt = evidence(np.random.default_rng(seed + 2), STABLE_Q - DROP)
    crossed = alt > threshold
    found = crossed.any(axis=1)
    first = np.where(found, crossed.argmax(axis=1), -1)
    calls = np.where(found, (first + 1) * args.look, args.horizon + args.look)
    return {
        "effect": effect,
        "threshold_log_lambda": threshold,
        "nominal_alpha": math.exp(-threshold),
        "false_rollback": float((peak > threshold).mean()),
        "detected": float(found.mean()),
        "calls_per_pair": 0 if method in ABSOLUTE else JUDGED[method][1],
        "median_calls": float(np.median(calls)),
        "p80_calls": float(np.percentile(calls, 80)),
    }


def gsm8k_rho(path: Path) -> float | None:
    """Tetrachoric correlation of the two models' correct/incorrect labels, or None."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    models = [k for k in rows[0] if k != "prompt" and not k.endswith("_response")]
    a, b = ([r[m].strip().lower() == "true" for r in rows] for m in models[:2])
    n = len(rows)
    pa, pb = sum(a) / n, sum(b) / n
    both = sum(x and y for x, y in zip(a, b, strict=True)) / n
    za, zb = stats.norm.ppf(pa), stats.norm.ppf(pb)
    lo, hi = -0.99, 0.99
    for _ in range(50):
        mid = (lo + hi) / 2
        p = stats.multivariate_normal.cdf([za, zb], cov=[[1, mid], [mid, 1]])
        lo, hi = (mid, hi) if p < both else (lo, mid)
    return (lo + hi) / 2


def similarity_on_gsm8k(path: Path) -> dict[str, Any] | None:
    """The gateway's reference-free signal (``gateway.similarity``) on real answer pairs:
    Mixtral's answer against GPT-4's (as the candidate's against stable's) on each GSM8K
    question — what it costs per pair, and how well it tells Mixtral's wrong answers
    from its right ones (AUC; 0.5 is chance)."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    cand, stab = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    if not rows or not {cand, f"{cand}_response", f"{stab}_response"} <= set(rows[0]):
        return None
    scores, right, seconds, peaks = [], [], [], []
    for r in rows:
        a, b = r[f"{cand}_response"], r[f"{stab}_response"]
        tracemalloc.start()
        t0 = time.perf_counter()
        scores.append(similarity(a, b))
        seconds.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        right.append(r[cand].strip().lower() == "true")
    x, y = np.array(scores), np.array(right)
    auc = float(stats.mannwhitneyu(x[y], x[~y]).statistic / (y.sum() * (~y).sum()))
    # Timing without tracemalloc's overhead, separately.
    plain = []
    for r in rows:
        t0 = time.perf_counter()
        similarity(r[f"{cand}_response"], r[f"{stab}_response"])
        plain.append(time.perf_counter() - t0)
    return {
        "pairs": len(rows),
        "mean_when_right": float(x[y].mean()),
        "mean_when_wrong": float(x[~y].mean()),
        "auc_right_vs_wrong": auc,
        "p50_ms": float(np.percentile(plain, 50) * 1e3),
        "p99_ms": float(np.percentile(plain, 99) * 1e3),
        "peak_kib_p99": float(np.percentile(peaks, 99) / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--horizon", type=int, default=8000, help="judge calls per run")
    p.add_argument("--look", type=int, default=40, help="judge calls between checks")
    p.add_argument("--false-rollback", type=float, default=0.05)
    p.add_argument("--judge-noise", type=float, default=0.1)
    p.add_argument("--bias", type=float, default=0.2)
    p.add_argument("--tie-margin", type=float, default=0.02)
    p.add_argument(
        "--strong-margin", type=float, default=0.15,
        help="a graded verdict says 'much better' past this quality difference",
    )
    p.add_argument("--rho", type=float, nargs="*", default=[0.0, 0.3, 0.5, 0.8])
    p.add_argument(
        "--leniency", type=float, nargs="*", default=[0.0, 0.1],
        help="sd of the judge's per-prompt offset on an absolute score (cancels in a pair)",
    )
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--out", type=Path, default=RESULTS / "judging")
    p.add_argument(
        "--only-similarity",
        action="store_true",
        help="re-measure only the similarity section, into the existing report",
    )
    args = p.parse_args(argv)
    if args.only_similarity:
        report = json.loads(args.out.with_suffix(".json").read_text())
        report["similarity"] = similarity_on_gsm8k(GSM8K)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(report))
        return 0
    measured = gsm8k_rho(GSM8K)
    if measured is None:
        print(f"{GSM8K} absent: no GSM8K row", file=sys.stderr)
    rhos = [(f"rho={r:g}", r) for r in args.rho]
    if measured is not None:
        rhos.append((f"GSM8K (rho={measured:.2f})", measured))
    started = time.monotonic()
    rows = []
    cells = [(label, rho, le) for le in args.leniency for label, rho in rhos]
    for i, (label, rho, leniency) in enumerate(cells):
        world = World(
            rho, args.judge_noise, args.bias, args.tie_margin, leniency, args.strong_margin
        )
        label = f"{label}, leniency {leniency:g}"
        row: dict[str, Any] = {"world": label, "rho": rho, "leniency": leniency}
        for method in METHODS:
            row[method] = detect(method, world, args, args.seed + 10 * i)
        base = row["absolute"]["median_calls"]
        row["ratios"] = {m: row[m]["median_calls"] / base for m in JUDGED}
        row["ratios_1_5"] = {
            m: row[m]["median_calls"] / row["absolute-1-5"]["median_calls"] for m in JUDGED
        }
        rows.append(row)
        print(
            f"{label}: absolute {base:.0f} calls (1-5: "
            f"{row['absolute-1-5']['median_calls']:.0f}); "
            + ", ".join(
                f"{m} {row[m]['median_calls']:.0f} (x{row['ratios'][m]:.2f})" for m in JUDGED
            ),
            flush=True,
        )
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {
        "settings": settings,
        "seconds": time.monotonic() - started,
        "rows": rows,
        "similarity": similarity_on_gsm8k(GSM8K),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Pairwise judging against stable vs two absolute judge scores",
        "",
        "`make bench-judging` (bench/judging_bench.py; its docstring states the model). "
        f"Judge calls until a {DROP * 100:.0f}-point quality drop (0.80 -> 0.75) is rolled "
        f"back, {s['runs']} runs per cell, checked every {s['look']} judge calls, horizon "
        f"{s['horizon']} calls; each method's threshold calibrated so that "
        f"{s['false_rollback']:.0%} of A/A runs roll back within the horizon. Judge noise "
        f"{s['judge_noise']} per answer, position bias {s['bias']}, tie margin "
        f"{s['tie_margin']}, 'much better' past {s.get('strong_margin', 0.15)}. "
        "`absolute`: one score per judge call on 0-10; `absolute-1-5`: on 1-5, as the "
        "gateway's `llm_judge` asks. `pairwise`: the gateway's default, a graded five-point "
        "verdict in both orders (two judge calls per pair); `pairwise-one-order`: graded, "
        "one order drawn at random (`orders: 1`, one call); `pairwise-winner`, "
        "`pairwise-winner-one-order`: A, B or tie (`scale: winner`); `pairwise-scores`, "
        "`pairwise-scores-one-order`: both answers scored 1-5 side by side in one call "
        "(`scale: scores`). Each pair also costs "
        "one shadow call to stable: the 'with shadow calls' column adds them. `rho`: the "
        "correlation of stable's and the candidate's answer quality on the same prompt; "
        "`leniency`: the sd of a judge's per-prompt offset on absolute scores.",
        "",
        "| world | method | median judge calls | p80 | with shadow calls (median) | detected"
        " | false rollback (A/A) | effect seen |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        for method in METHODS:
            r = row[method]
            per_pair = r["calls_per_pair"]
            total = r["median_calls"] * (1 + 1 / per_pair) if per_pair else r["median_calls"]
            lines.append(
                f"| {row['world']} | {method} | {r['median_calls']:.0f} | {r['p80_calls']:.0f}"
                f" | {total:.0f} | {r['detected']:.1%} | {r['false_rollback']:.1%}"
                f" | {r['effect']:.4f} |"
            )
    judged = list(JUDGED)
    lines += [
        "",
        "Pairwise / absolute (0-10), median judge calls ("
        + "; ".join(judged)
        + "), and against absolute 1-5 (the same order):",
        "",
    ]
    lines += [
        f"- {row['world']}: "
        + "; ".join(f"x{row['ratios'][m]:.2f}" for m in judged)
        + " | 1-5: "
        + "; ".join(f"x{row['ratios_1_5'][m]:.2f}" for m in judged)
        for row in report["rows"]
    ]
    for label, key in (("0-10 scores", "ratios"), ("1-5 scores (the gateway's llm_judge)",
                                                   "ratios_1_5")):  # fmt: skip
        met = [r["world"] for r in report["rows"] if min(r[key].values()) <= 0.5]
        missed = [r["world"] for r in report["rows"] if r["world"] not in met]
        lines += [
            "",
            f"Target (some pairwise method needs at most half the judge calls of absolute "
            f"{label}): "
            + (f"met in {'; '.join(met)}" if met else "met in no world measured")
            + (f"; not met in {'; '.join(missed)}." if missed else "."),
        ]
    lines += [
        "",
        "One pairwise call sees both answers where absolute needs a call for each; pairing "
        "cancels what the two answers to one prompt share, so the gain grows with rho; a "
        "verdict keeps less of each difference than a score (a graded one more than A, B or "
        "tie), and a position bias is noise in one order and costs a second call in two.",
    ]
    sim = report.get("similarity")
    if sim:
        lines += [
            "",
            "## Reference-free: similarity to stable's answer (gateway.similarity)",
            "",
            f"On GSM8K's {sim['pairs']} questions, Mixtral's answer against GPT-4's (as a "
            "candidate's against stable's on a shadowed pair): mean similarity "
            f"{sim['mean_when_right']:.3f} when Mixtral is right, {sim['mean_when_wrong']:.3f}"
            f" when wrong; AUC {sim['auc_right_vs_wrong']:.3f} for telling them apart (0.5 "
            f"is chance). Cost per pair: p50 {sim['p50_ms']:.2f} ms, p99 {sim['p99_ms']:.2f}"
            f" ms of CPU in the gateway's background task (never on the user's path), "
            f"{sim['peak_kib_p99']:.0f} KiB peak allocation (p99), nothing kept between "
            "pairs and no model loaded.",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
