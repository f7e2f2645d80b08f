"""Optimizer benchmark: how fast each search finds the cheapest config at the quality floor.

Two environments with an exact oracle:

* ``simulator``: the built-in fleet (sim-small / sim-medium / sim-large) x
  temperature x maxTokens; quality is the simulator's exact expected quality,
  cost the exact expected price of a request (60 prompt tokens; answer length
  lognormal per model, cut at maxTokens).
* ``replay``: ``gsm8k_responses.csv`` (two real models' answers to the 1,319
  GSM8K test questions, with correctness). A config is a model and a
  maxTokens; an answer longer than maxTokens is cut and counted wrong; quality
  is the share of questions answered correctly, cost the mean price per
  question at the list prices in the data README. Tokens are approximated as
  characters / 4 (prompt and answer) — documented, not a tokenizer.

Each request a canary serves has its own quality score (bench/trial_model.py): graded
scores in the simulator (Beta around the true quality, the simulator's own model),
correct/incorrect in the replay (a question answered right or wrong); 2,000 requests a
minute at full traffic; cost within +-2%. Methods, on the same seeds:

* ``ours``: the operator's decide code — ``optimizer.build_study``/``ask``
  (multi-objective TPE, constraints via ``set_constraint``, warm start from
  the stable config, duplicate configs told their earlier result) and the
  predictor skipping configs it is confident break a constraint (those trials
  serve no canary traffic);
* ``random``: Optuna's RandomSampler;
* ``tpe_scalar``: single-objective TPE on a weighted sum without constraints
  (what Katib offers).

A method is "within 5%" at the first trial after which its best config *judged*
feasible is truly feasible and costs at most 1.05x the oracle. Canary traffic is
counted in weight x analysis intervals of the operator's default trial steps
(10% for 3 intervals, then 50% for 3: 1.8 per full trial). Ours: a trial the
predictor skips serves nothing; one it gives an even chance or more of breaking
the floor starts at 2.5%, a low-confidence one at 5%; the
policy's constraints are critical rollback triggers on every trial Rollout,
checked at every analysis interval as the operator does, so a candidate measured
below the floor at any check (each with the same noise) stops there and is told
to the study as infeasible — which also rolls back, now and then, a truly
feasible config near the floor. Random and scalar TPE (no guardrails, as in
Katib) serve full trials. ``violating_traffic_share`` is the share served by
configs truly below the floor. "Trials" count every trial of the study, including
ours' trial 0 (the stable config measured on its own traffic) and the configs it
proves or predicts infeasible without a Rollout; "Rollouts" count only the trials
that ran as canaries on live traffic (for random and scalar TPE, every trial).

Run: ``make bench-optimizer`` (``--dataset PATH`` for another file with the
same columns, ``--seeds N``, ``--trials N``). Writes bench/results/optimizer.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimizer_operator.api.llmconfig import ModelConfig  # noqa: E402
from optimizer_operator.api.policy import OptimizationPolicySpec, TrialRecord  # noqa: E402
from optimizer_operator.decide import optimizer, predictor, threshold_search  # noqa: E402
from optimizer_operator.decide.trials import first_weight_divisor  # noqa: E402
from optimizer_operator.providers.simulator import load_fleet  # noqa: E402
from optimizer_operator.routers import dataset as replay_dataset  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from trial_model import REQUESTS_PER_INTERVAL, STEPS, Kind, Rule, run_trial, scores  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "gsm8k_responses.csv"
CHECKPOINTS = (10, 20, 40)
# Canary traffic of one trial in weight x intervals, for the operator's default trial
# steps (10% for 3 intervals, 50% for 3): a full trial serves 1.8.
FIRST_STEP = STEPS[0][0]
FULL_TRIAL = sum(w * n for w, n in STEPS)
FULL_TRIAL_REQUESTS = round(sum(w * n for w, n in STEPS) * REQUESTS_PER_INTERVAL)


@dataclass
class Env:
    name: str
    spec: OptimizationPolicySpec
    stable: ModelConfig
    truth: Callable[[dict[str, str]], tuple[float, float]]  # params -> (quality, cost)
    floor: float
    oracle_cost: float
    oracle: dict[str, str]
    price_of: Callable[[str], float | None]  # model key -> list price (the catalog)
    kind: Kind = "graded"  # per-request quality scores: graded, or correct/incorrect


def _spec(models: list[str], params: list[dict[str, Any]], floor: float) -> OptimizationPolicySpec:
    return OptimizationPolicySpec.model_validate(
        {
            "targetRef": {"name": "bench"},
            "objectives": [
                {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.5"},
                {"metric": "quality_score", "direction": "maximize", "weight": "0.5"},
            ],
            "constraints": {"minQuality": str(floor)},
            "searchSpace": {
                "models": [{"provider": "simulator", "model": m} for m in models],
                "parameters": params,
            },
            "sampler": {"name": "tpe"},
        }
    )


def _grid(env_params: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    points: list[dict[str, str]] = [{}]
    for name, values in env_params:
        points = [{**p, name: v} for p in points for v in values]
    return points


def simulator_env() -> Env:
    fleet = load_fleet()
    rng = np.random.default_rng(0)
    draws = {
        name: np.exp(np.log(m.answer_median) + m.answer_sigma * rng.standard_normal(20000))
        for name, m in fleet.models.items()
    }
    prompt_tokens = 60

    def truth(params: dict[str, str]) -> tuple[float, float]:
        name = params["model"].split("/")[1]
        m = fleet.models[name]
        cap = int(params.get("maxTokens", "4096"))
        quality = m.expected_quality(float(params.get("temperature", "1")), 1.0, cap)
        out = float(np.minimum(draws[name], cap).mean())
        cost = (
            prompt_tokens * float(m.price.input_per_mtok) + out * float(m.price.output_per_mtok)
        ) / 1e6
        return quality, cost

    models = ["sim-small", "sim-medium", "sim-large"]
    temps = [f"{t / 10:.1f}" for t in range(11)]
    tokens = ["64", "96", "128", "160", "192", "256", "320", "384", "512", "768", "1024"]
    params = [
        {"name": "temperature", "type": "float", "low": "0", "high": "1", "step": "0.1"},
        {"name": "maxTokens", "type": "categorical", "choices": tokens},
    ]
    floor = 0.85
    grid = _grid(
        [
            ("model", [f"simulator/{m}" for m in models]),
            ("temperature", temps),
            ("maxTokens", tokens),
        ]
    )

    def price_of(key: str) -> float | None:
        p = fleet.models[key.split("/")[1]].price
        return float(p.input_per_mtok + p.output_per_mtok)

    return _finish_env(
        "simulator",
        models,
        params,
        floor,
        truth,
        grid,
        "sim-medium",
        "0.7",
        "1024",
        price_of,
        "graded",
    )


def replay_env(path: Path) -> Env:
    # Columns by their meaning: the prompt, a correctness column per model, its answer
    # text; anything else in the file is ignored.
    ds = replay_dataset.load(path)
    missing = [m for m in ds.models if m not in ds.responses]
    if missing:
        raise SystemExit(f"error: {path}: no answer text ({missing[0]}_response) to count "
                         "the answer budget's tokens from")  # fmt: skip
    prices = {"mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6), "gpt-4-1106-preview": (10, 30)}
    short = {c: c.split("/")[-1].lower() for c in ds.models}
    data = {
        short[c]: {
            "correct": np.array(ds.correct[c]),
            "tokens": np.array([len(r) / 4 for r in ds.responses[c]]),
            "prompt": np.array([len(p) / 4 for p in ds.prompts]),
            "price": prices.get(c, (1.0, 1.0)),
        }
        for c in ds.models
    }

    def truth(params: dict[str, str]) -> tuple[float, float]:
        d = data[params["model"].split("/")[1]]
        cap = int(params["maxTokens"])
        fits = d["tokens"] <= cap
        quality = float((d["correct"] & fits).mean())
        pin, pout = d["price"]
        cost = float((d["prompt"] * pin + np.minimum(d["tokens"], cap) * pout).mean() / 1e6)
        return quality, cost

    models = sorted(data)
    tokens = ["32", "48", "64", "80", "96", "112", "128", "160", "192", "256", "384", "512", "768"]
    params = [{"name": "maxTokens", "type": "categorical", "choices": tokens}]
    floor = 0.80
    grid = _grid([("model", [f"simulator/{m}" for m in models]), ("maxTokens", tokens)])
    # The starting config is the cheap model, below the floor: the search must find the
    # strong model and then the smallest answer budget that keeps it above the floor.
    cheap = min(models, key=lambda m: data[m]["correct"].mean())

    def price_of(key: str) -> float | None:
        pin, pout = data[key.split("/")[1]]["price"]
        return float(pin + pout)

    return _finish_env(
        "replay", models, params, floor, truth, grid, cheap, None, "768", price_of, "binary"
    )


def router_env(path: Path, folds: int = 5) -> Env:
    """GSM8K again, with a third choice: a router between the two models (the cheap one
    answers when the router gives it at least ``routerThreshold``). Its scores are
    out-of-fold (each question scored by a prompt router trained on the other folds), so
    the oracle over models x maxTokens x threshold is exact for what a router trained on
    the app's traffic would do on new questions."""
    from optimizer_operator.routers.model import Router

    base = replay_env(path)
    ds = replay_dataset.load(path)
    strong = max(ds.models, key=ds.accuracy)
    cheap = min(ds.models, key=ds.accuracy)
    split = np.random.default_rng(0).permutation(len(ds.prompts)) % folds
    good = np.array(ds.correct[cheap])
    oof = np.zeros(len(ds.prompts))
    for k in range(folds):
        train, test = np.flatnonzero(split != k), np.flatnonzero(split == k)
        router = Router.train("prompt", [ds.prompts[i] for i in train], good[train].tolist(),
                              c=1.0)  # fmt: skip
        oof[test] = router.scores([ds.prompts[i] for i in test])
    prices = {"mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6), "gpt-4-1106-preview": (10, 30)}
    per = {
        m: {
            "correct": np.array(ds.correct[m]),
            "tokens": np.array([len(r) / 4 for r in ds.responses[m]]),
            "price": prices.get(m, (1.0, 1.0)),
        }
        for m in (cheap, strong)
    }
    prompt_tokens = np.array([len(p) / 4 for p in ds.prompts])
    short = {m: m.split("/")[-1].lower() for m in (cheap, strong)}
    routed_key = f"simulator/{short[cheap]}@router:simulator/{short[strong]}"

    def served(model: str, cap: int) -> tuple[np.ndarray, np.ndarray]:
        d = per[model]
        pin, pout = d["price"]
        right = d["correct"] & (d["tokens"] <= cap)
        cost = (prompt_tokens * pin + np.minimum(d["tokens"], cap) * pout) / 1e6
        return right, cost

    def truth(params: dict[str, str]) -> tuple[float, float]:
        if params["model"] != routed_key:
            return base.truth(params)
        cap = int(params["maxTokens"])
        # No threshold in the point: the choice's own (router.threshold), as _config does.
        use_cheap = oof >= float(params.get("routerThreshold", "0.5"))
        (cr, cc), (sr, sc) = served(cheap, cap), served(strong, cap)
        return float(np.where(use_cheap, cr, sr).mean()), float(np.where(use_cheap, cc, sc).mean())

    tokens = ["32", "48", "64", "80", "96", "112", "128", "160", "192", "256", "384", "512", "768"]
    thresholds = [f"{t:.2f}" for t in np.arange(0.0, 1.0001, 0.05)]
    plain = [f"simulator/{short[m]}" for m in (strong, cheap)]
    grid = _grid([("model", plain), ("maxTokens", tokens)]) + _grid(
        [("model", [routed_key]), ("maxTokens", tokens), ("routerThreshold", thresholds)]
    )
    floor = base.floor
    feasible = [(truth(p)[1], p) for p in grid if truth(p)[0] >= floor]
    oracle_cost, oracle = min(feasible, key=lambda x: x[0])
    router_choice = {
        "provider": "simulator", "model": short[cheap],
        "router": {"mode": "prompt", "threshold": "0.5",
                   "artifact": {"name": "gsm8k-router", "digest": "0" * 64},
                   "strong": {"provider": "simulator", "model": short[strong]}},
    }  # fmt: skip
    spec = base.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    spec["searchSpace"]["models"].append(router_choice)
    spec["searchSpace"]["parameters"].append(
        {"name": "routerThreshold", "type": "float", "low": "0", "high": "1", "step": "0.05"}
    )

    # A router key is priced from its two models' (optimizer.routed_price).
    return Env(
        "router", OptimizationPolicySpec.model_validate(spec), base.stable, truth, floor,
        oracle_cost, oracle, base.price_of, base.kind,
    )  # fmt: skip


def _finish_env(
    name: str,
    models: list[str],
    params: list[dict[str, Any]],
    floor: float,
    truth: Callable[[dict[str, str]], tuple[float, float]],
    grid: list[dict[str, str]],
    stable_model: str,
    stable_temp: str | None,
    stable_tokens: str,
    price_of: Callable[[str], float | None],
    kind: Kind,
) -> Env:
    feasible = [(truth(p)[1], p) for p in grid if truth(p)[0] >= floor]
    oracle_cost, oracle = min(feasible, key=lambda x: x[0])
    parameters: dict[str, Any] = {"maxTokens": int(stable_tokens)}
    if stable_temp is not None:
        parameters["temperature"] = stable_temp
    stable = ModelConfig.model_validate(
        {"provider": "simulator", "model": stable_model, "parameters": parameters}
    )
    return Env(
        name,
        _spec(models, params, floor),
        stable,
        truth,
        floor,
        oracle_cost,
        oracle,
        price_of,
        kind,
    )


def _measure(env: Env, params: dict[str, str], rng: np.random.Generator) -> tuple[float, float]:
    """A whole trial's measurement: the mean of its requests' quality scores (a full
    trial's worth), and its cost per request within +-2%."""
    quality, cost = env.truth(params)
    measured = float(scores(rng, quality, FULL_TRIAL_REQUESTS, env.kind).mean())
    return measured, cost * (1 + rng.normal(0, 0.02))


@dataclass
class Run:
    best_costs: list[float | None]  # true cost of the best judged-feasible config, per trial
    served: float  # canary traffic units
    violating: float
    rollouts: list[int]  # Rollouts (canaries on live traffic) run so far, per trial
    feasible_rolled_back: int = 0  # trial Rollouts of truly feasible configs rolled back
    feasible_rollouts: int = 0  # trial Rollouts of truly feasible configs
    inconclusive: int = 0  # trial Rollouts that ended Inconclusive


def _track(env: Env, judged: list[tuple[dict[str, str], float, float]]) -> float | None:
    """True cost of the config the method would pick now: cheapest judged feasible;
    None when that pick is truly infeasible or there is none."""
    ok = [(c, p) for p, q, c in judged if q >= env.floor]
    if not ok:
        return None
    _, pick = min(ok, key=lambda x: x[0])
    quality, cost = env.truth(pick)
    return cost if quality >= env.floor else None


def run_ours(  # noqa: PLR0915  one run of the loop as the operator would take it
    env: Env, seed: int, trials: int, rule: Rule = "confident"
) -> Run:
    rng = np.random.default_rng(seed)
    spec = env.spec.model_copy(
        update={"sampler": env.spec.sampler.model_copy(update={"seed": seed})}
    )
    records: list[TrialRecord] = []
    judged: list[tuple[dict[str, str], float, float]] = []
    best: list[float | None] = []
    served = violating = 0.0
    canaries = feasible_rollouts = feasible_rolled_back = inconclusive = 0
    per_trial: list[int] = []

    def done() -> None:
        """A trial ended: the pick it leaves, and the Rollouts run so far."""
        best.append(_track(env, judged))
        per_trial.append(canaries)

    study = optimizer.build_study(spec, [], env.stable)
    baseline = optimizer.baseline_params(spec, env.stable)
    for n in range(trials):
        if n == 0 and baseline is not None:
            # Trial 0 is the stable config measured on its own traffic: no canary, no Rollout.
            proposal = optimizer.ask(study, spec, env.stable, first=baseline)
            quality, cost = _measure(env, proposal.params, rng)
            proposal.trial.set_constraint("minQuality", env.floor - quality)
            study.tell(proposal.trial, [cost, quality])
            records.append(_record(n, proposal.params, quality, cost, env.floor, rollout=None))
            judged.append((proposal.params, quality, cost))
            done()
            continue
        screen = optimizer.screening_params(spec, env.stable, records, env.price_of)
        if screen is None:  # then a router's threshold bisection, as trial_start does
            searched = threshold_search.next_point(spec, records)
            screen = searched[0] if searched else None
        proposal = optimizer.ask(study, spec, env.stable, first=screen)
        params = proposal.params
        seen = next((r for r in records if r.params == params), None)
        if seen is not None:
            values = [float(v) for v in seen.values or []]
            for k, v in seen.constraints.items():
                proposal.trial.set_constraint(k, float(v))
            study.tell(proposal.trial, values)
            records.append(seen.model_copy(update={"number": n}))
            done()
            continue
        bound = predictor.bounded_violation(records, params, {"quality_score": (env.floor, False)})
        if bound is not None:
            # Proven below the floor by a measured larger budget: no Rollout, no traffic.
            known = bound[0]
            q_known = float(known.metrics["quality_score"])
            c_known = float(known.metrics["cost_per_request_usd"])
            proposal.trial.set_constraint("minQuality", env.floor - q_known)
            study.tell(proposal.trial, [c_known, q_known])
            rec = _record(n, params, q_known, c_known, env.floor)
            records.append(rec.model_copy(update={"outcome": "PredictedInfeasible"}))
            done()
            continue
        forecast = predictor.predict(spec.search_space, records, params)
        q_pred = forecast.metrics.get("quality_score")
        if q_pred is not None and predictor.confident_violation(q_pred, env.floor, upper=False):
            # Told as infeasible at its predicted values; no Rollout, no traffic.
            c_pred = forecast.metrics["cost_per_request_usd"].mean
            proposal.trial.set_constraint("minQuality", env.floor - q_pred.mean)
            study.tell(proposal.trial, [c_pred, q_pred.mean])
            records.append(_record(n, params, q_pred.mean, c_pred, env.floor))
            done()
            continue
        cost = _measure(env, params, rng)[1]
        # The first canary step is smaller for a risky or uncertain config, as the operator
        # makes it (a quarter at an even chance of breaking the floor, half at low
        # confidence), and the policy's constraints ride on every trial Rollout as critical
        # rollback triggers, checked at every analysis interval on the requests so far
        # (trial_model: the operator's confidence sequences, or the point rule before).
        chance = predictor.violation_chance(forecast, {"quality_score": (env.floor, False)})
        first = FIRST_STEP / first_weight_divisor(forecast.confidence, chance)
        truly = env.truth(params)[0]
        trial = run_trial(rng, truly, env.floor, env.kind, rule, first_weight=first)
        canaries += 1
        served += trial.share_intervals
        violating += trial.share_intervals * (truly < env.floor)
        if truly >= env.floor:
            feasible_rollouts += 1
            feasible_rolled_back += trial.outcome == "rolled_back"
        if trial.outcome == "inconclusive":
            # Neither side shown: told as what it is (Optuna FAIL), as the operator does.
            inconclusive += 1
            study.tell(proposal.trial, state=optuna.trial.TrialState.FAIL)
            records.append(
                _record(n, params, trial.quality, cost, env.floor).model_copy(
                    update={"state": "Failed", "outcome": "Inconclusive"}
                )
            )
            done()
            continue
        quality = trial.quality
        proposal.trial.set_constraint("minQuality", env.floor - quality)
        study.tell(proposal.trial, [cost, quality])
        records.append(_record(n, params, quality, cost, env.floor))
        judged.append((params, quality, cost))
        done()
    return Run(
        best,
        served,
        violating,
        per_trial,
        feasible_rolled_back,
        feasible_rollouts,
        inconclusive,
    )


def _record(
    n: int,
    params: dict[str, str],
    q: float,
    c: float,
    floor: float,
    rollout: str | None = "trial",
) -> TrialRecord:
    return TrialRecord(
        number=n,
        rollout=rollout,
        params=params,
        hash=str(sorted(params.items())),
        state="Complete",
        values=[f"{c:.6g}", f"{q:.6g}"],
        constraints={"minQuality": f"{floor - q:.6g}"},
        metrics={"quality_score": f"{q:.6g}", "cost_per_request_usd": f"{c:.6g}"},
    )


def run_baseline(env: Env, seed: int, trials: int, method: str) -> Run:
    rng = np.random.default_rng(seed)
    dists = optimizer.distributions(env.spec.search_space, "x")
    if method == "random":
        study = optuna.create_study(
            directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=seed)
        )
    else:
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
    judged: list[tuple[dict[str, str], float, float]] = []
    best: list[float | None] = []
    served = violating = 0.0
    for _ in range(trials):
        trial = study.ask(dists)
        params = {k: optimizer._encode(v) for k, v in trial.params.items()}
        quality, cost = _measure(env, params, rng)
        served += FULL_TRIAL  # no guardrails: every trial runs its whole schedule
        violating += FULL_TRIAL * (env.truth(params)[0] < env.floor)
        if method == "random":
            study.tell(trial, [cost, quality])
        else:
            # Katib-style weighted sum, cost scaled by the stable config's cost.
            scale = env.truth(optimizer.baseline_params(env.spec, env.stable) or params)[1]
            study.tell(trial, 0.5 * quality - 0.5 * cost / scale)
        judged.append((params, quality, cost))
        best.append(_track(env, judged))
    return Run(best, served, violating, list(range(1, trials + 1)))


def _first_within(run: Run, oracle: float) -> int | None:
    for i, c in enumerate(run.best_costs):
        if c is not None and c <= 1.05 * oracle:
            return i + 1
    return None


def _gap(run: Run, oracle: float, n: int) -> float:
    c = run.best_costs[min(n, len(run.best_costs)) - 1]
    return math.inf if c is None else c / oracle - 1


def _median_trials(values: list[int | None], cap: int) -> float:
    """Median trials to within 5%; runs that never got there count as cap + 1."""
    return float(statistics.median([v if v is not None else cap + 1 for v in values]))


def bench(env: Env, seeds: int, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "oracle": env.oracle,
        "oracle_cost_usd": env.oracle_cost,
        "floor": env.floor,
        "methods": {},
    }
    for method in ("ours", "ours_point_rule", "random", "tpe_scalar"):
        runs = [
            run_ours(env, s, trials)
            if method == "ours"
            else run_ours(env, s, trials, rule="point")
            if method == "ours_point_rule"
            else run_baseline(env, s, trials, method)
            for s in range(seeds)
        ]
        firsts = [_first_within(r, env.oracle_cost) for r in runs]
        # The same moment counted in Rollouts: ours measures the stable config first on its
        # own traffic (trial 0, no canary) and skips configs it can prove infeasible.
        canaries = [
            r.rollouts[f - 1] if f is not None else None for r, f in zip(runs, firsts, strict=True)
        ]
        gaps = {n: [_gap(r, env.oracle_cost, n) for r in runs] for n in CHECKPOINTS if n <= trials}
        served = sum(r.served for r in runs)
        out["methods"][method] = {
            "trials_to_within_5pct_median": _median_trials(firsts, trials),
            "never_within_5pct": sum(f is None for f in firsts),
            "rollouts_to_within_5pct_median": _median_trials(canaries, trials),
            "gap_after": {
                str(n): {
                    "median": float(np.median(g)),
                    "iqr": [float(np.percentile(g, 25)), float(np.percentile(g, 75))],
                }
                for n, g in gaps.items()
            },
            "violating_traffic_share": sum(r.violating for r in runs) / served if served else 0.0,
            "canary_traffic_per_run": served / len(runs),
            "feasible_rollouts_rolled_back": sum(r.feasible_rolled_back for r in runs),
            "feasible_rollouts": sum(r.feasible_rollouts for r in runs),
            "inconclusive_rollouts": sum(r.inconclusive for r in runs),
        }
    return out


def _fmt_gap(g: dict[str, Any]) -> str:
    def f(x: float) -> str:
        return "none found" if not math.isfinite(x) else f"{x:+.1%}"

    return f"{f(g['median'])} [{f(g['iqr'][0])}, {f(g['iqr'][1])}]"


def _rolled_back(v: dict[str, Any]) -> str:
    if not v["feasible_rollouts"]:
        return "-"
    share = v["feasible_rollouts_rolled_back"] / v["feasible_rollouts"]
    return f"{v['feasible_rollouts_rolled_back']}/{v['feasible_rollouts']} ({share:.1%})"


def _finite(x: Any) -> Any:
    """JSON has no Infinity or NaN: "none found" becomes null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=40)
    args = ap.parse_args()
    started = time.time()
    envs = [simulator_env()]
    if args.dataset.exists():
        envs.append(replay_env(args.dataset))
        envs.append(router_env(args.dataset))
    else:
        print(f"replay dataset not found at {args.dataset}: simulator only", file=sys.stderr)
    results = {e.name: bench(e, args.seeds, args.trials) for e in envs}
    summary: dict[str, Any] = {"seeds": args.seeds, "trials": args.trials, "environments": results}
    key_env = results.get("replay") or results["simulator"]
    m = key_env["methods"]
    summary.update(
        {
            "dataset": "replay" if "replay" in results else "simulator",
            "trials_to_within_5pct_median": m["ours"]["trials_to_within_5pct_median"],
            "random_trials_to_within_5pct_median": m["random"]["trials_to_within_5pct_median"],
            "tpe_scalar_trials_to_within_5pct_median": m["tpe_scalar"][
                "trials_to_within_5pct_median"
            ],
            "violating_traffic_share": m["ours"]["violating_traffic_share"],
            "rollouts_to_within_5pct_median": m["ours"]["rollouts_to_within_5pct_median"],
            "random_rollouts_to_within_5pct_median": m["random"]["rollouts_to_within_5pct_median"],
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "optimizer.json").write_text(json.dumps(_finite(summary), indent=2) + "\n")
    lines = [
        "# Optimizer benchmark",
        "",
        f"`make bench-optimizer`: {args.seeds} seeds x {args.trials} trials per method; "
        f"{time.time() - started:.0f} s. See bench/optimizer_bench.py for the environments, "
        "the noise model and what counts as a trial.",
        "",
    ]
    for name, r in results.items():
        lines += [
            f"## {name}",
            "",
            f"Quality floor {r['floor']}; oracle (cheapest config at the floor): "
            f"{r['oracle']} at ${r['oracle_cost_usd']:.6f} per request.",
            "",
            "| method | trials to within 5% (median; >N = not reached) | of which Rollouts "
            "| not reached | "
            + " | ".join(f"cost gap after {n}" for n in CHECKPOINTS if n <= args.trials)
            + " | canary traffic on violating configs | canary traffic per run "
            "| feasible Rollouts rolled back | Rollouts inconclusive |",
            "|---|---|---|---|"
            + "---|" * len([n for n in CHECKPOINTS if n <= args.trials])
            + "---|---|---|---|",
        ]
        for method, v in r["methods"].items():
            lines.append(
                f"| {method} | {v['trials_to_within_5pct_median']:.1f} | "
                f"{v['rollouts_to_within_5pct_median']:.1f} | "
                f"{v['never_within_5pct']}/{args.seeds} | "
                + " | ".join(
                    _fmt_gap(v["gap_after"][str(n)]) for n in CHECKPOINTS if n <= args.trials
                )
                + f" | {v['violating_traffic_share']:.1%} | {v['canary_traffic_per_run']:.1f} | "
                + _rolled_back(v)
                + f" | {v['inconclusive_rollouts']} |"
            )
        lines.append("")
    (RESULTS / "optimizer.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
