"""Retrain a router on newer labelled answers, and measure it against the current one on
answers neither was trained on.

Run by the operator as a child process (``python -m optimizer_operator.routers.retrain``,
a JSON request on stdin, a JSON answer on stdout) so that training's CPU, its memory
(scipy, the feature matrix) and its time limit stay out of the operator's own process.

The retrained router gets a threshold of its own: the one at which it escalates the share
of the recorded requests the current router escalates at its threshold. Its scores are on a
scale of their own, so the current threshold would change the cost (and the latency) as
well as which requests go to the strong model; at the same share the canary compares the
two routers at the cost the current one runs at, and the threshold search moves from there.

The held-out fifth is chosen by a hash of each prompt, so the same prompt is held out on
every run. The current router may have been trained on some of those prompts (it was
trained on older traffic): its held-out AUC is then optimistic, which only makes a
retrained router harder to accept.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np

from .model import Router, auc

HOLDOUT_SHARE = 5  # one prompt in five is held out


def held_out(prompt: str) -> bool:
    return hashlib.sha256(prompt.encode()).digest()[0] % HOLDOUT_SHARE == 0


def escalated(scores: np.ndarray, threshold: float) -> float:
    """The share of requests a router sends to the strong model at ``threshold`` (the
    cheap model answers when its score is at least the threshold)."""
    return float(np.mean(scores < threshold)) if len(scores) else 0.0


def same_share_threshold(scores: np.ndarray, share: float) -> float:
    """The threshold at which a router with these scores escalates ``share`` of them:
    0 (the cheap model always) and 1 (the strong model always, but for a score of 1) at
    the ends, else the ``share`` quantile, rounded to 4 places."""
    if share <= 0.0 or not len(scores):
        return 0.0
    if share >= 1.0:
        return 1.0
    return round(min(1.0, max(0.0, float(np.quantile(scores, share)))), 4)


def retrain(request: dict[str, Any]) -> dict[str, Any]:
    """``request``: prompts, good, answers (cascade), current (the artifact's text), its
    threshold (default 0.5), seed. The retrained artifact (trained on all of them), its
    threshold at the current router's share of escalations, and both held-out AUCs."""
    prompts: list[str] = [str(p) for p in request["prompts"]]
    good = np.asarray([bool(g) for g in request["good"]])
    answers: list[str] | None = request.get("answers")
    current = Router.loads(str(request["current"]))
    seed = int(request.get("seed", 0))
    texts = answers if current.mode == "cascade" else None
    hold = np.asarray([held_out(p) for p in prompts])
    out: dict[str, Any] = {"rows": len(prompts), "heldOut": int(hold.sum())}
    rest, tested = good[~hold], good[hold]
    if len(tested) >= 10 and 0 < tested.sum() < len(tested) and 0 < rest.sum() < len(rest):
        train = np.flatnonzero(~hold)
        test = np.flatnonzero(hold)
        candidate = Router.train(
            current.mode,
            [prompts[i] for i in train],
            good[train].tolist(),
            [texts[i] for i in train] if texts else None,
            cheap=current.cheap,
            strong=current.strong,
            seed=seed,
        )
        test_prompts = [prompts[i] for i in test]
        test_texts = [texts[i] for i in test] if texts else None
        out["auc"] = {
            "current": auc(current.scores(test_prompts, test_texts), good[test].astype(float)),
            "retrained": auc(candidate.scores(test_prompts, test_texts), good[test].astype(float)),
        }
    final = Router.train(
        current.mode, prompts, good.tolist(), texts, cheap=current.cheap,
        strong=current.strong, seed=seed,
    )  # fmt: skip
    final.meta["retrainedFrom"] = json.loads(str(request["current"])).get("digest")
    out["artifact"] = final.dumps()
    share = escalated(current.scores(prompts, texts), float(request.get("threshold", 0.5)))
    out["escalated"] = round(share, 4)
    out["threshold"] = f"{same_share_threshold(final.scores(prompts, texts), share):.4f}"
    return out


def main() -> int:
    try:
        request = json.load(sys.stdin)
        answer = retrain(request)
    except (ValueError, KeyError, TypeError) as exc:
        json.dump({"error": str(exc)}, sys.stdout)
        return 1
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
