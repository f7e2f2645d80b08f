"""Per-request routers: datasets read by their columns' meaning, the linear router and
its artifact (refused when corrupt or incompatible), and RouteLLM's measures."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from optimizer_operator.routers import dataset as datasets
from optimizer_operator.routers.evaluate import curve, oracle_scores, random_curve
from optimizer_operator.routers.model import Router, auc

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k_responses.csv"


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_dataset_is_read_by_its_columns_meaning(tmp_path: Path) -> None:
    rows = [
        {"id": i, "category": "math", "prompt": f"q{i}", "small": i % 2 == 0,
         "big": "true", "small_response": f"a{i}", "latency_ms": 120 + i}
        for i in range(6)
    ]  # fmt: skip
    ds = datasets.load(_write_csv(tmp_path / "d.csv", rows))
    assert ds.models == ["small", "big"]
    assert ds.correct["small"] == [True, False, True, False, True, False]
    assert ds.responses == {"small": [f"a{i}" for i in range(6)]}  # big has no text
    assert set(ds.ignored) == {"id", "category", "latency_ms"}
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"question": "q", "m1": 1, "m2": "no"})
                               for _ in range(3)))  # fmt: skip
    assert datasets.load(jsonl).correct == {"m1": [True] * 3, "m2": [False] * 3}


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([{"text": "q", "a": True, "b": False}], "no prompt column"),
        ([{"prompt": "q", "a": True, "b": "maybe"}], "found 1: a"),
    ],
)
def test_a_dataset_without_what_a_router_needs_is_refused(
    tmp_path: Path, rows: list[dict[str, object]], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        datasets.load(_write_csv(tmp_path / "bad.csv", rows))


def _synthetic(n: int, seed: int) -> tuple[list[str], list[bool], list[str]]:
    """Questions the cheap model gets right when they are short sums; answers that
    hedge when it got them wrong."""
    rng = np.random.default_rng(seed)
    prompts, good, answers = [], [], []
    for _ in range(n):
        hard = bool(rng.random() < 0.4)
        if hard:
            prompts.append(f"a train leaves at {rng.integers(1, 12)} and another one later, "
                           "how far apart are they after the percentage discount")  # fmt: skip
        else:
            prompts.append(f"what is {rng.integers(1, 99)} plus {rng.integers(1, 99)}")
        right = bool(rng.random() < (0.25 if hard else 0.9))
        good.append(right)
        answers.append("the answer is 12" if right else "maybe approximately 40 i think")
    return prompts, good, answers


def test_a_router_ranks_unseen_requests_and_a_cascade_reads_the_cheap_answer() -> None:
    prompts, good, answers = _synthetic(400, 1)
    test_p, test_good, test_a = _synthetic(300, 2)
    labels = np.array(test_good, dtype=float)
    prompt_only = Router.train("prompt", prompts, good, seed=0)
    cascade = Router.train("cascade", prompts, good, answers, seed=0)
    assert auc(prompt_only.scores(test_p), labels) > 0.7
    assert auc(cascade.scores(test_p, test_a), labels) > auc(prompt_only.scores(test_p), labels)
    # One request scored alone is the batch's score for it.
    assert cascade.score(test_p[0], test_a[0]) == pytest.approx(
        float(cascade.scores(test_p[:1], test_a[:1])[0]), rel=1e-6
    )
    with pytest.raises(ValueError, match="needs the cheap model's answers"):
        Router.train("cascade", prompts, good)
    with pytest.raises(ValueError, match="all the same"):
        Router.train("prompt", prompts, [True] * len(prompts))


def test_the_artifact_round_trips_and_a_bad_one_is_refused() -> None:
    prompts, good, _ = _synthetic(200, 3)
    router = Router.train("prompt", prompts, good, cheap="small", strong="big", c=4.0)
    text = router.dumps()
    again = Router.loads(text)
    assert again.weights.keys() == router.weights.keys() and again.cheap == "small"
    assert np.allclose(again.scores(prompts), router.scores(prompts), atol=1e-5)
    doc = json.loads(text)
    bad = {
        "not JSON": "{",
        "kind is not": json.dumps({**doc, "kind": "something/else"}),
        "version 2": json.dumps({**doc, "version": 2}),
        "features": json.dumps({**doc, "features": {"hash": "md5", "dims": 10, "ngrams": 3}}),
        "digest does not match": json.dumps({**doc, "weights": doc["weights"][:-8] + "AAAAAAA="}),
        "corrupt": json.dumps({k: v for k, v in doc.items() if k != "bias"}),
    }
    tampered = copy.deepcopy(doc)
    tampered["count"] = doc["count"] + 1
    bad["truncated"] = json.dumps(tampered)
    for says, artifact in bad.items():
        with pytest.raises(ValueError, match=says):
            Router.loads(artifact)


def test_routellms_measures_on_a_known_example() -> None:
    cheap = np.array([1, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    strong = np.array([1, 1, 1, 1, 0, 1, 0, 1], dtype=bool)
    cost_cheap, cost_strong = np.full(8, 1.0), np.full(8, 10.0)
    rand = random_curve(cheap, strong, cost_cheap, cost_strong)
    assert rand.apgr() == pytest.approx(0.5) and rand.cpt(0.5) == pytest.approx(0.5)
    oracle = curve(oracle_scores(cheap, strong), cheap, strong, cost_cheap, cost_strong)
    # Three questions only strong answers: two strong calls already match strong's own
    # quality, three beat it (the oracle keeps the one cheap gets and strong misses).
    assert oracle.share_for(1.0) == pytest.approx(2 / 8)
    assert oracle.quality[3] == pytest.approx(7 / 8) and oracle.quality[-1] == 6 / 8
    assert oracle.cpt(0.5) == pytest.approx(1 / 8)
    cascade = curve(oracle_scores(cheap, strong), cheap, strong, cost_cheap, cost_strong,
                    cascade=True)  # fmt: skip
    assert cascade.cost_at(3 / 8) == pytest.approx(8 * 1.0 + 3 * 10.0)  # both calls
    assert oracle.cost_at(3 / 8) == pytest.approx(5 * 1.0 + 3 * 10.0)


@pytest.mark.skipif(not GSM8K.exists(), reason="../shared/data/gsm8k_responses.csv absent")
def test_gsm8k_reads_as_its_readme_says() -> None:
    ds = datasets.load(GSM8K)
    assert len(ds.prompts) == 1319 and set(ds.responses) == set(ds.models)
    assert round(ds.accuracy("gpt-4-1106-preview"), 3) == 0.857
    assert round(ds.accuracy("mistralai/Mixtral-8x7B-Instruct-v0.1"), 3) == 0.638


def test_train_router_writes_an_artifact_the_router_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optimizer_operator.cli.main import main

    prompts, good, answers = _synthetic(200, 5)
    rows = [{"prompt": p, "small": g, "big": True, "small_response": a, "notes": "x"}
            for p, g, a in zip(prompts, good, answers, strict=True)]  # fmt: skip
    data = _write_csv(tmp_path / "traffic.csv", rows)
    out = tmp_path / "router.json"
    args = ["train-router", "--dataset", str(data), "--cheap", "small", "--strong", "big"]
    assert main([*args, "--mode", "cascade", "--out", str(out), "--folds", "3"]) == 0
    said = capsys.readouterr().out
    assert "3-fold: APGR" in said and f"wrote {out}: cascade router" in said
    router = Router.loads(out.read_text())
    assert router.mode == "cascade" and router.cheap == "small" and router.strong == "big"
    wrong = ["train-router", "--dataset", str(data), "--cheap", "nope", "--strong", "big"]
    assert main([*wrong, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cheap: 'nope' is not a correctness column")
    assert main(["train-router", "--dataset", str(tmp_path / "missing.csv"), "--cheap", "a",
                 "--strong", "b", "--out", str(out)]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("error: --dataset:")


async def test_the_gateways_recordings_train_a_router(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `llm-optimizer gateway --record` writes (the real Recorder), labelled by the
    evaluators, is a training set: the cheap model's labels are enough."""
    from optimizer_operator.cli.main import main
    from optimizer_operator.gateway.recording import Recorder

    prompts, good, answers = _synthetic(240, 7)
    path = tmp_path / "traffic.jsonl"
    recorder = Recorder(path, "pii")
    recorder.start()
    for p, g, a in zip(prompts, good, answers, strict=True):
        recorder.record(prompt=p, model="small", response=a, correct=g,
                        llm_config="bot", variant="v1")  # fmt: skip
    recorder.record(prompt="unlabelled", model="small", response="x", correct=None,
                    llm_config="bot", variant="v1")  # fmt: skip
    await recorder.stop()
    ds = datasets.load(path, min_models=1)
    assert ds.models == ["small"] and len(ds.prompts) == len(set(prompts))
    out = tmp_path / "router.json"
    args = ["train-router", "--dataset", str(path), "--cheap", "small", "--strong", "big"]
    assert main([*args, "--out", str(out)]) == 0
    assert Router.loads(out.read_text()).cheap == "small"
    assert main([*args, "--out", str(out), "--folds", "3"]) == 2
    assert "--folds needs the strong model's labels" in capsys.readouterr().err
    hashed = tmp_path / "hashed.jsonl"
    recorder = Recorder(hashed, "hash")
    recorder.start()
    recorder.record(prompt="q", model="small", response="a", correct=True,
                    llm_config="bot", variant="v1")  # fmt: skip
    await recorder.stop()
    with pytest.raises(ValueError, match="record-redaction hash"):
        datasets.load(hashed, min_models=1)
