"""The optimizer: one Optuna study per OptimizationPolicy, driven by ask and tell.

The study lives in the policy's ``status.trialRecords`` (or PostgreSQL when
configured) and is rebuilt from them on every cycle, so an operator restart
loses nothing: each record is enqueued and re-told with the values and
constraints it had. Objectives carry their directions; constraints go through
``trial.set_constraint`` so samplers learn the infeasible regions; the sampler
is the one the policy names, seeded as it says.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..api.common import parse_decimal
from ..api.llmconfig import ModelConfig, Parameters, RouterConfig
from ..api.policy import (
    Constraints,
    ModelChoice,
    Objective,
    OptimizationPolicySpec,
    ParameterRange,
    Sampler,
    SearchSpace,
    TrialRecord,
    request_bounds,
)

MODEL = "model"
optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)


class SamplerUnavailable(RuntimeError):
    """The policy names a sampler this installation cannot run."""


def model_key(provider: str, model: str) -> str:
    return f"{provider}/{model}"


ROUTED = "@router:"
THRESHOLD = "routerThreshold"


def _routed_key(provider: str, model: str, router: RouterConfig | None) -> str:
    """A router choice is its cheap model's key and the strong one's: both may be in a
    space, as two choices."""
    base = model_key(provider, model)
    if router is None:
        return base
    return f"{base}{ROUTED}{model_key(router.strong.provider, router.strong.model)}"


def choice_key(m: ModelChoice) -> str:
    """The categorical value of a model choice of the search space."""
    return _routed_key(m.provider, m.model, m.router)


def config_key(c: ModelConfig) -> str:
    """The categorical value a configuration stands at."""
    return _routed_key(c.provider, c.model, c.router)


def _f(value: str | None) -> float | None:
    return None if value is None else float(parse_decimal(value))


def distribution(p: ParameterRange) -> BaseDistribution:
    """The Optuna distribution of one parameter range."""
    if p.type == "categorical":
        return CategoricalDistribution(list(p.choices or []))
    low, high, step = _f(p.low), _f(p.high), _f(p.step)
    assert low is not None and high is not None
    if p.type == "int":
        return IntDistribution(
            int(low), int(high), log=p.log, step=1 if p.log or step is None else int(step)
        )
    return FloatDistribution(low, high, log=p.log, step=None if p.log else step)


def _active(p: ParameterRange, model: str) -> bool:
    base = model.split(ROUTED, 1)[0]
    if p.name == THRESHOLD and ROUTED not in model:
        return False  # a threshold means something to a router choice only
    return p.when is None or base.split("/", 1)[-1] in p.when.models


def distributions(space: SearchSpace, model: str) -> dict[str, BaseDistribution]:
    """The distributions a trial with ``model`` uses (conditional parameters included
    only when their ``when`` matches)."""
    out: dict[str, BaseDistribution] = {}
    if space.models:
        out[MODEL] = CategoricalDistribution([choice_key(m) for m in space.models])
    for p in space.parameters:
        if _active(p, model):
            out[p.name] = distribution(p)
    return out


def sampler_for(spec: Sampler, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The sampler the policy names, pinned explicitly (never Optuna's default choice)."""
    if spec.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=spec.seed, n_startup_trials=4, multivariate=True, constant_liar=True
        )
    if spec.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=8)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise SamplerUnavailable(
            "spec.sampler.name: gp needs PyTorch, which is not installed in the operator "
            "image; use tpe, nsga2 or random (or install torch)"
        )
    return optuna.samplers.GPSampler(seed=spec.seed)


def _encode(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _decode(params: dict[str, str], dists: dict[str, BaseDistribution]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in params.items():
        d = dists.get(name)
        if isinstance(d, IntDistribution):
            out[name] = int(raw)
        elif isinstance(d, FloatDistribution):
            out[name] = float(raw)
        else:
            out[name] = raw
    return out


def _model_of(params: dict[str, str], stable: ModelConfig) -> str:
    return params.get(MODEL) or config_key(stable)


def build_study(
    spec: OptimizationPolicySpec,
    records: Sequence[TrialRecord],
    stable: ModelConfig,
    storage: optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
) -> optuna.Study:
    """The policy's study with every recorded trial told again (in-memory storage), or
    loaded as it is (a persistent storage that already holds them)."""
    directions = [o.direction for o in spec.objectives]
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=directions,
        sampler=sampler_for(spec.sampler, len(directions)),
        load_if_exists=storage is not None,
    )
    if storage is not None and len(study.trials) >= len(records):
        return study
    _tell_records(study, spec, records, stable)
    return study


def sqlalchemy_url(url: str) -> str:
    """A libpq URL (postgresql://…) as SQLAlchemy's psycopg 3 dialect wants it."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@functools.lru_cache(maxsize=8)
def _rdb(url: str) -> optuna.storages.RDBStorage:
    """One storage (and connection pool) per database, created on first use."""
    return optuna.storages.RDBStorage(
        url=sqlalchemy_url(url),
        engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}},
    )


def persistent_study(
    spec: OptimizationPolicySpec,
    records: Sequence[TrialRecord],
    stable: ModelConfig,
    url: str,
    study_name: str,
) -> optuna.Study:
    """The policy's study in Optuna's RDBStorage (PostgreSQL), brought in line with the
    records: trials it lacks are told; trials still running there but finished in the
    records are told their result; running trials no record knows (an operator that died
    between ask and writing status) are failed, so they do not hold the sampler back.

    Raises ``sqlalchemy.exc.SQLAlchemyError`` when the database cannot be reached."""
    study = optuna.create_study(
        storage=_rdb(url),
        study_name=study_name,
        directions=[o.direction for o in spec.objectives],
        sampler=sampler_for(spec.sampler, len(spec.objectives)),
        load_if_exists=True,
    )
    known = {t.number: t for t in study.get_trials(deepcopy=False)}
    by_number = {r.number: r for r in records}
    for number, t in known.items():
        if t.state != optuna.trial.TrialState.RUNNING:
            continue
        r = by_number.get(number)
        if r is None:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        elif r.state == "Complete" and r.values is not None:
            trial = optuna.trial.Trial(study, t._trial_id)
            for key, value in r.constraints.items():
                trial.set_constraint(key, float(value))
            study.tell(number, [float(v) for v in r.values])
        elif r.state == "Failed":
            study.tell(number, state=optuna.trial.TrialState.FAIL)
    missing = [r for r in sorted(records, key=lambda r: r.number) if r.number not in known]
    _tell_records(study, spec, missing, stable)
    return study


def _tell_records(
    study: optuna.Study,
    spec: OptimizationPolicySpec,
    records: Sequence[TrialRecord],
    stable: ModelConfig,
) -> None:
    for r in records:
        dists = distributions(spec.search_space, _model_of(r.params, stable))
        dists = {k: v for k, v in dists.items() if k in r.params}
        study.enqueue_trial(_decode(r.params, dists))
        trial = study.ask(dists)
        if r.state == "Complete" and r.values is not None:
            for key, value in r.constraints.items():
                trial.set_constraint(key, float(value))
            study.tell(trial, [float(v) for v in r.values])
        elif r.state == "Failed":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # Running trials stay running: TPE's constant liar keeps the next ask away.


def baseline_params(spec: OptimizationPolicySpec, stable: ModelConfig) -> dict[str, str] | None:
    """The stable configuration as a point of the search space (the warm start: trial 0
    measures it as it runs), or None when the space cannot express it."""
    key = config_key(stable)
    params: dict[str, str] = {}
    space = spec.search_space
    if space.models:
        if key not in [choice_key(m) for m in space.models]:
            return None
        params[MODEL] = key
    current = stable.parameters.to_wire()
    if stable.router is not None:
        current[THRESHOLD] = stable.router.threshold
    for p in space.parameters:
        if not _active(p, key) or p.name not in current:
            continue  # the stable config leaves it to the provider: not part of this point
        value = _in_space(p, current[p.name])
        if value is None:
            return None  # outside the range: the baseline is not a point of this space
        params[p.name] = _encode(value)
    return params


def _in_space(p: ParameterRange, raw: object) -> Any:
    """A stable parameter value as a value of ``p``'s distribution, or None outside it."""
    d = distribution(p)
    value = (
        str(raw)
        if isinstance(d, CategoricalDistribution)
        else _decode({p.name: str(raw)}, {p.name: d})[p.name]
    )
    return value if d._contains(d.to_internal_repr(value)) else None


def routed_price(key: str, price_of: Callable[[str], float | None]) -> float | None:
    """A model key's price; a router choice's, between its two models' (the mean: what
    it pays depends on the share it sends on), None when either is unknown."""
    if ROUTED not in key:
        return price_of(key)
    cheap, strong = (price_of(k) for k in key.split(ROUTED, 1))
    return None if cheap is None or strong is None else (cheap + strong) / 2


def screening_params(
    spec: OptimizationPolicySpec,
    stable: ModelConfig,
    records: Sequence[TrialRecord],
    price_of: Callable[[str], float | None],
) -> dict[str, str] | None:
    """The next model to screen, as a point of the space, or None when all are measured.

    A structured initial design in place of the sampler's random start-up trials: each
    model of the space is measured once at the stable configuration's parameters (or the
    middle of a range the stable value falls outside; a router choice at its own
    threshold). While the stable configuration misses a constraint the pricier models
    come first (quality is what is missing); otherwise the cheaper ones (savings are what
    is sought). ``price_of`` gives a model key's output price per token, or None when the
    catalog does not know it (last; a router's is ``routed_price``)."""
    space = spec.search_space
    if not spec.sampler.screen_models or spec.sampler.name == "random" or len(space.models) < 2:
        return None
    tried = {r.params.get(MODEL) for r in records}
    keys = [choice_key(m) for m in space.models]
    todo = [k for k in keys if k not in tried]
    if not todo:
        return None
    base = next((r for r in records if r.rollout is None and r.state == "Complete"), None)
    up = base is not None and any(float(v) > 0 for v in base.constraints.values())

    def order(key: str) -> tuple[int, float]:
        price = routed_price(key, price_of)
        if price is None:
            return (1, 0.0)
        return (0, -price if up else price)

    key = min(todo, key=order)
    current = stable.parameters.to_wire()
    choice = next(m for m in space.models if choice_key(m) == key)
    if choice.router is not None:  # a router is screened at its own (trained) threshold
        current[THRESHOLD] = choice.router.threshold
    params = {MODEL: key}
    for p in space.parameters:
        if not _active(p, key):
            continue
        d = distribution(p)
        value = _in_space(p, current[p.name]) if p.name in current else None
        if value is None:
            if isinstance(d, CategoricalDistribution):
                value = d.choices[len(d.choices) // 2]
            else:
                assert isinstance(d, (IntDistribution, FloatDistribution))
                mid = (d.low + d.high) / 2
                if d.step:
                    mid = d.low + round((mid - d.low) / d.step) * d.step
                value = int(mid) if isinstance(d, IntDistribution) else float(mid)
        params[p.name] = _encode(value)
    return params


def grid_points(
    spec: OptimizationPolicySpec, stable: ModelConfig, limit: int
) -> list[dict[str, str]] | None:
    """Every point of a discrete search space (models x categorical or stepped
    parameters), or None when the space is continuous or has more than ``limit``
    points."""
    space = spec.search_space
    keys = [choice_key(m) for m in space.models] or [config_key(stable)]
    points: list[dict[str, str]] = []
    for key in keys:
        per: list[dict[str, str]] = [{MODEL: key} if space.models else {}]
        for p in space.parameters:
            if not _active(p, key):
                continue
            d = distribution(p)
            values: list[Any]
            if isinstance(d, CategoricalDistribution):
                values = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                values = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step:
                n = round((d.high - d.low) / d.step)
                values = [round(d.low + i * d.step, 10) for i in range(n + 1)]
            else:
                return None  # continuous: not a small discrete set
            per = [{**x, p.name: _encode(v)} for x in per for v in values]
            if len(per) > limit:
                return None
        points += per
        if len(points) > limit:
            return None
    return points


@dataclass
class Proposal:
    trial: optuna.trial.Trial
    params: dict[str, str]
    config: ModelConfig


def ask(
    study: optuna.Study,
    spec: OptimizationPolicySpec,
    stable: ModelConfig,
    first: dict[str, str] | None = None,
) -> Proposal:
    """A new candidate: the model first, then the parameters active for it. ``first``
    (a point of the space, e.g. from :func:`screening_params`) is asked instead of the
    sampler's choice."""
    if first is not None:
        key = first.get(MODEL) or config_key(stable)
        dists = distributions(spec.search_space, key)
        study.enqueue_trial(_decode(first, dists))
    trial = study.ask()
    space = spec.search_space
    key = config_key(stable)
    if space.models:
        key = str(trial.suggest_categorical(MODEL, [choice_key(m) for m in space.models]))
    values: dict[str, Any] = {}
    for p in space.parameters:
        if not _active(p, key):
            continue
        d = distribution(p)
        if isinstance(d, CategoricalDistribution):
            values[p.name] = trial.suggest_categorical(p.name, list(d.choices))
        elif isinstance(d, IntDistribution):
            values[p.name] = trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
        else:
            assert isinstance(d, FloatDistribution)
            values[p.name] = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    params = {k: _encode(v) for k, v in trial.params.items()}
    return Proposal(trial, params, _config(spec, stable, key, values))


def config_of(
    spec: OptimizationPolicySpec, stable: ModelConfig, params: dict[str, str]
) -> ModelConfig:
    """The configuration a trial's recorded ``params`` stand for, over ``stable`` (the
    same one ``ask`` built when it proposed them)."""
    key = params.get(MODEL) or config_key(stable)
    dists = distributions(spec.search_space, key)
    values = _decode({k: v for k, v in params.items() if k in dists and k != MODEL}, dists)
    return _config(spec, stable, key, values)


def _config(
    spec: OptimizationPolicySpec, stable: ModelConfig, key: str, values: dict[str, Any]
) -> ModelConfig:
    space = spec.search_space
    provider, model = key.split(ROUTED, 1)[0].split("/", 1)
    values = dict(values)
    threshold = values.pop(THRESHOLD, None)
    parameters = {**stable.parameters.to_wire(), **{k: _encode(v) for k, v in values.items()}}
    for name, v in values.items():
        if isinstance(v, int) and name in ("maxTokens", "topK"):
            parameters[name] = v
    choice = next((m for m in space.models if choice_key(m) == key), None)
    router = choice.router if choice is not None else None
    if router is None and key == config_key(stable):
        router = stable.router  # the space has no models: the stable choice, routed or not
    if router is not None and threshold is not None:
        router = router.model_copy(update={"threshold": f"{float(threshold):.4f}"})
    endpoint = (
        choice.endpoint
        if choice is not None and choice.endpoint is not None
        else (stable.endpoint if provider == stable.provider else None)
    )
    return ModelConfig(
        provider=provider,
        model=model,
        parameters=Parameters.model_validate(parameters),
        endpoint=endpoint,
        router=router,
    )


# -- judging ------------------------------------------------------------------


def constraint_values(
    constraints: Constraints, values: dict[str, float], daily_requests: float | None
) -> dict[str, float]:
    """Each hard constraint as a number that is <= 0 when it holds (Optuna's convention)."""
    out: dict[str, float] = {}
    for c, bound in request_bounds(constraints):
        if c.metric in values:
            sign = 1 if c.upper else -1
            out[c.key] = sign * (values[c.metric] - float(parse_decimal(bound)))
    if (
        constraints.max_daily_cost_usd is not None
        and daily_requests is not None
        and "cost_per_request_usd" in values
    ):
        projected = values["cost_per_request_usd"] * daily_requests
        out["maxDailyCostUsd"] = projected - float(parse_decimal(constraints.max_daily_cost_usd))
    return out


def improvement(
    objectives: Sequence[Objective], canary: dict[str, float], stable: dict[str, float]
) -> float:
    """Weighted relative improvement of the candidate over stable, measured side by side
    (positive is better): sum of weight x signed relative change, over total weight."""
    total, weights = 0.0, 0.0
    for o in objectives:
        c, s = canary[o.metric], stable[o.metric]
        change = (c - s) / abs(s) if s else (c - s)
        sign = 1.0 if o.direction == "maximize" else -1.0
        w = float(parse_decimal(o.weight))
        total += w * sign * change
        weights += w
    return total / weights if weights else 0.0


def feasible(record: TrialRecord) -> bool:
    return (
        record.state == "Complete"
        and record.values is not None
        and all(float(v) <= 0 for v in record.constraints.values())
    )


def pareto_front(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[int]:
    """Numbers of the feasible, non-dominated trials."""
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in objectives]
    points = [
        (r.number, [s * float(v) for s, v in zip(signs, r.values or [], strict=True)])
        for r in records
        if feasible(r)
    ]
    front = []
    for n, p in points:
        dominated = any(
            all(a <= b for a, b in zip(q, p, strict=True)) and q != p for _, q in points
        )
        if not dominated:
            front.append(n)
    return front


def choose(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], front: Sequence[int]
) -> TrialRecord | None:
    """One point of the front by the objectives' weights, on values scaled to [0, 1]."""
    chosen = [r for r in records if r.number in front]
    if not chosen:
        return None
    cols = list(zip(*[[float(v) for v in r.values or []] for r in chosen], strict=True))

    def score(r: TrialRecord) -> float:
        total = 0.0
        for i, o in enumerate(objectives):
            lo, hi = min(cols[i]), max(cols[i])
            x = 0.5 if hi == lo else (float((r.values or [])[i]) - lo) / (hi - lo)
            total += float(parse_decimal(o.weight)) * (x if o.direction == "maximize" else 1 - x)
        return total

    return max(chosen, key=lambda r: (score(r), -r.number))


def importance(study: optuna.Study) -> dict[str, str]:
    """Which parameters mattered most for the first objective (fANOVA), when there is
    enough to say; empty otherwise."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3 or len({k for t in complete for k in t.params}) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(
            study, target=lambda t: t.values[0] if t.values else math.nan
        )
    except (RuntimeError, ValueError) as exc:  # e.g. a parameter with a single value so far
        log.debug("importance not available: %s", exc)
        return {}
    return {k: f"{v:.3f}" for k, v in found.items()}


def _ordinal(p: ParameterRange) -> bool:
    try:
        return bool(p.choices) and all(math.isfinite(float(c)) for c in p.choices or [])
    except ValueError:
        return False


def param_distance(space: SearchSpace, a: dict[str, str], b: dict[str, str]) -> float:
    """Distance between two points: numeric parameters scaled by their range (log ranges
    on the log scale), numeric choices by rank, a different model, category or a missing
    parameter counting 1."""
    ranges: dict[str, ParameterRange] = {p.name: p for p in space.parameters}
    total = 0.0
    for name in set(a) | set(b):
        x, y = a.get(name), b.get(name)
        p = ranges.get(name)
        if x is None or y is None:
            total += 1.0
        elif p is not None and p.type == "categorical" and _ordinal(p):
            # Numbers offered as choices (e.g. maxTokens 64/128/256) are ordered: by rank.
            ranks = sorted(p.choices or [], key=float)
            if x in ranks and y in ranks and len(ranks) > 1:
                total += ((ranks.index(x) - ranks.index(y)) / (len(ranks) - 1)) ** 2
            else:
                total += 0.0 if x == y else 1.0
        elif p is not None and p.type != "categorical":
            lo, hi = _f(p.low) or 0.0, _f(p.high) or 1.0
            fx, fy = float(x), float(y)
            if p.log and lo > 0:
                lo, hi, fx, fy = math.log(lo), math.log(hi), math.log(fx), math.log(fy)
            total += ((fx - fy) / (hi - lo)) ** 2 if hi > lo else 0.0
        else:
            total += 0.0 if x == y else 1.0
    return math.sqrt(total)


def similar_trials(
    space: SearchSpace, records: Sequence[TrialRecord], params: dict[str, str], k: int = 3
) -> list[TrialRecord]:
    """The ``k`` finished trials nearest to ``params``."""
    done = [r for r in records if r.state != "Running"]
    return sorted(done, key=lambda r: (param_distance(space, params, r.params), r.number))[:k]
