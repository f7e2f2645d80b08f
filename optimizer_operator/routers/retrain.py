"""Retrain a router on newer labelled answers, and measure it against the current one on
answers neither was trained on.

Run by the operator as a child process (``python -m optimizer_operator.routers.retrain``,
a JSON request on stdin, a JSON answer on stdout) so that training's CPU, its memory
(scipy, the feature matrix) and its time limit stay out of the operator's own process.

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


def retrain(request: dict[str, Any]) -> dict[str, Any]:
    """``request``: prompts, good, answers (cascade), current (the artifact's text),
    seed. The retrained artifact (trained on all of them) and both held-out AUCs."""
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
