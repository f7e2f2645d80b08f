"""Router retraining's pure choices: when it is due, when a retrained router earns a
canary (held-out AUC, nothing without a comparison), which artifact the search uses once
a retrained one is stable; and the child process that trains and measures it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from optimizer_operator.api.llmconfig import ModelConfig
from optimizer_operator.api.policy import (
    OptimizationPolicySpec,
    RouterTraining,
    RouterTrainingStatus,
)
from optimizer_operator.api.timestamps import format_ts
from optimizer_operator.api.validation import InvalidSpec, parse_spec
from optimizer_operator.decide import router_retrain
from optimizer_operator.providers.replay import DEFAULT_DATASET
from optimizer_operator.routers import dataset as datasets
from optimizer_operator.routers.model import Router
from optimizer_operator.routers.retrain import retrain

NOW = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)
ROUTER = {"mode": "prompt", "threshold": "0.5",
          "artifact": {"name": "gsm8k-router", "digest": "a" * 64},
          "strong": {"provider": "replay", "model": "gpt-4"}}  # fmt: skip


def _spec(training: dict[str, object] | None = None) -> OptimizationPolicySpec:
    return parse_spec(OptimizationPolicySpec, {
        "targetRef": {"name": "bot"},
        "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
        "searchSpace": {"models": [
            {"provider": "replay", "model": "gpt-4"},
            {"provider": "replay", "model": "mixtral", "router": ROUTER},
        ]},
        "routerTraining": {"every": "24h"} if training is None else training,
    })  # fmt: skip


def test_due_by_interval_or_cron_since_the_last_run_or_the_policys_creation() -> None:
    every = RouterTraining.model_validate({"every": "1h"})
    ran = RouterTrainingStatus(last_run=format_ts(NOW - timedelta(minutes=59)))
    assert not router_retrain.due(every, ran, NOW, None)
    assert router_retrain.due(every, ran, NOW + timedelta(minutes=2), None)
    assert not router_retrain.due(every, None, NOW, NOW - timedelta(minutes=5))
    nightly = RouterTraining.model_validate({"cron": "0 3 * * *", "timeZone": "UTC"})
    assert router_retrain.due(nightly, None, NOW, NOW - timedelta(hours=1))  # 03:00 passed
    ran = RouterTrainingStatus(last_run=format_ts(NOW - timedelta(minutes=20)))
    assert not router_retrain.due(nightly, ran, NOW, None)


@pytest.mark.parametrize(
    ("training", "field"),
    [({}, "every"), ({"every": "1h", "cron": "@daily"}, "every"), ({"cron": "61 * * * *"}, "cron"),
     ({"every": "1h", "timeZone": "UTC"}, "timeZone"),
     ({"every": "1h", "minRequests": 500, "maxRequests": 100}, "maxRequests")],
)  # fmt: skip
def test_a_schedule_that_is_not_one_is_refused_naming_the_field(
    training: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidSpec, match=f"routerTraining.{field}"):
        _spec(training)


def test_a_retrained_router_is_canaried_only_when_better_on_held_out_answers() -> None:
    assert router_retrain.judge({"current": 0.6, "retrained": 0.7}, "0.01").canary
    worse = router_retrain.judge({"current": 0.6, "retrained": 0.605}, "0.01")
    assert not worse.canary and worse.outcome == "NotBetter" and "0.605" in worse.message
    blind = router_retrain.judge(None, "0")
    assert not blind.canary and blind.outcome == "NotEnoughData"


def test_the_search_uses_the_retrained_artifact_once_it_is_stable() -> None:
    spec = _spec()
    digest = "b" * 64
    name = router_retrain.artifact_name("tune", digest)
    assert name == "tune-router-bbbbbbbbbbbb"
    stable = ModelConfig.model_validate({
        "provider": "replay", "model": "mixtral",
        "router": {**ROUTER, "threshold": "0.3125", "artifact": {"name": name, "digest": digest}},
    })  # fmt: skip
    used = router_retrain.effective_spec(spec, stable, "tune")
    assert used.search_space.models[1].router is not None
    assert used.search_space.models[1].router.artifact.digest == digest
    # ... at the threshold it was canaried at: its scores are on a scale of their own.
    assert used.search_space.models[1].router.threshold == "0.3125"
    assert used.search_space.models[0] == spec.search_space.models[0]
    assert spec.search_space.models[1].router.artifact.digest == "a" * 64  # never written
    # A router someone else put there (not this policy's ConfigMap) changes nothing.
    theirs = stable.model_copy(update={"router": stable.router.model_copy(
        update={"artifact": stable.router.artifact.model_copy(update={"name": "mine"})})})
    assert router_retrain.effective_spec(spec, theirs, "tune") is spec


@pytest.mark.skipif(
    not DEFAULT_DATASET.exists(), reason="../shared/data/gsm8k_responses.csv absent"
)
def test_more_labelled_answers_make_a_router_that_beats_one_trained_on_few() -> None:
    ds = datasets.load(DEFAULT_DATASET)
    cheap = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    good = ds.correct[cheap]
    weak = Router.train("prompt", ds.prompts[:60], good[:60], cheap=cheap, strong="gpt-4", c=1.0)
    answer = retrain({"prompts": ds.prompts, "good": good, "current": weak.dumps(),
                      "threshold": 0.55})  # fmt: skip
    assert answer["rows"] == len(ds.prompts) and answer["heldOut"] > 200
    assert answer["auc"]["retrained"] > answer["auc"]["current"] + 0.05, answer["auc"]
    retrained = Router.loads(answer["artifact"])
    # Its threshold escalates the share of these requests the current router does at 0.55.
    share = float(np.mean(weak.scores(ds.prompts) < 0.55))
    assert 0.05 < share < 0.95 and answer["escalated"] == pytest.approx(share, abs=1e-4)
    at = float(answer["threshold"])
    assert float(np.mean(retrained.scores(ds.prompts) < at)) == pytest.approx(share, abs=0.01)
    assert (retrained.cheap, retrained.strong, retrained.mode) == (cheap, "gpt-4", "prompt")
    assert json.loads(answer["artifact"])["trainedOn"]["retrainedFrom"] == json.loads(
        weak.dumps())["digest"]  # fmt: skip
    # One outcome only in the held-out part: no comparison, so no verdict to canary on.
    same = retrain({"prompts": ds.prompts[:40], "good": [True] * 39 + [False],
                    "current": weak.dumps()})  # fmt: skip
    assert "auc" not in same


def test_the_same_share_threshold_keeps_the_ends_and_the_quantile_between() -> None:
    from optimizer_operator.routers.retrain import escalated, same_share_threshold

    scores = np.linspace(0.0, 1.0, 101)
    assert same_share_threshold(scores, 0.0) == 0.0  # nothing escalated: cheap always
    assert same_share_threshold(scores, 1.0) == 1.0
    assert escalated(scores, same_share_threshold(scores, 0.3)) == pytest.approx(0.3, abs=0.01)
    assert escalated(np.asarray([]), 0.5) == 0.0


def test_the_child_process_answers_json_and_says_what_is_wrong() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "optimizer_operator.routers.retrain"],
        input=json.dumps({"prompts": ["a"], "good": [True], "current": "{}"}),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "not a router artifact" in json.loads(bad.stdout)["error"]
    rng = np.random.default_rng(0)
    prompts = [f"question {i} {'hard' if i % 3 else 'easy'}" for i in range(200)]
    good = [bool(i % 3 == 0 or rng.random() < 0.1) for i in range(200)]
    current = Router.train("prompt", prompts[:30], good[:30], cheap="c", strong="s", c=1.0)
    ok = subprocess.run(
        [sys.executable, "-m", "optimizer_operator.routers.retrain"],
        input=json.dumps({"prompts": prompts, "good": good, "current": current.dumps()}),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert Router.loads(json.loads(ok.stdout)["artifact"]).cheap == "c"
