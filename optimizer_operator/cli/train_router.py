"""``llm-optimizer train-router``: a per-request router from labelled traffic.

Reads a replay dataset (the gateway's ``--record`` JSONL with quality labels, or any
file with a prompt column and one correctness column per model, optionally
``<model>_response``; the cheap model's labels are enough to train)
and writes the router's artifact: JSON, versioned, small enough for a ConfigMap.

  llm-optimizer train-router --dataset traffic.csv --cheap mixtral --strong gpt-4 \\
      --mode cascade --out router.json

With ``--folds K`` it first reports what the router does on questions it was not
trained on (K-fold), as ``make bench-router`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..routers import dataset as datasets
from ..routers.evaluate import curve
from ..routers.model import Router


def add_parser(sub: Any) -> None:
    tr = sub.add_parser(
        "train-router",
        help="train a per-request router (cheap vs strong) from labelled traffic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument("--dataset", required=True, help="CSV or JSONL with correctness columns")
    tr.add_argument("--cheap", required=True, help="the cheap model's correctness column")
    tr.add_argument("--strong", required=True, help="the strong model's correctness column")
    tr.add_argument(
        "--mode",
        choices=["prompt", "cascade"],
        default="prompt",
        help="decide from the prompt, or from the cheap model's answer too",
    )
    tr.add_argument("--out", required=True, help="where to write the artifact (JSON)")
    tr.add_argument("--folds", type=int, default=0, help="report K-fold measures first")
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:  # the cheap model's labels are what a router learns from
        ds = datasets.load(args.dataset, min_models=1)
    except (OSError, ValueError) as exc:
        print(f"error: --dataset: {exc}", file=sys.stderr)
        return 2
    if args.cheap not in ds.correct:
        print(f"error: --cheap: {args.cheap!r} is not a correctness column; the dataset has "
              f"{', '.join(ds.models)}", file=sys.stderr)  # fmt: skip
        return 2
    if args.folds > 1 and args.strong not in ds.correct:
        print(f"error: --folds needs the strong model's labels too ({args.strong!r} has "
              "none in the dataset)", file=sys.stderr)  # fmt: skip
        return 2
    answers = ds.responses.get(args.cheap)
    if args.mode == "cascade" and answers is None:
        print(f"error: --mode cascade needs the cheap model's answers "
              f"({args.cheap}_response)", file=sys.stderr)  # fmt: skip
        return 2
    texts = answers if args.mode == "cascade" else None
    if args.folds > 1:
        _report_folds(args, ds, texts)
    try:
        router = Router.train(args.mode, ds.prompts, ds.correct[args.cheap], texts,
                              cheap=args.cheap, strong=args.strong, seed=args.seed)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = router.dumps()
    Path(args.out).write_text(text)
    print(f"wrote {args.out}: {args.mode} router, {len(router.weights):,} weights, "
          f"{len(text.encode()):,} bytes, trained on {len(ds.prompts):,} requests")  # fmt: skip
    return 0


def _report_folds(args: argparse.Namespace, ds: datasets.Dataset, texts: Any) -> None:
    n = len(ds.prompts)
    split = np.random.default_rng(args.seed).permutation(n) % args.folds
    scores = np.zeros(n)
    good = np.array(ds.correct[args.cheap])
    for k in range(args.folds):
        tr, te = np.flatnonzero(split != k), np.flatnonzero(split == k)
        r = Router.train(args.mode, [ds.prompts[i] for i in tr], good[tr].tolist(),
                         [texts[i] for i in tr] if texts else None, seed=args.seed + k)  # fmt: skip
        scores[te] = r.scores(
            [ds.prompts[i] for i in te], [texts[i] for i in te] if texts else None
        )
    ones = np.ones(n)
    c = curve(scores, good, np.array(ds.correct[args.strong]), ones, ones,
              cascade=args.mode == "cascade")  # fmt: skip
    print(f"{args.folds}-fold: APGR {c.apgr():.3f}, CPT(50%) {c.cpt(0.5):.1%}, CPT(80%) "
          f"{c.cpt(0.8):.1%}, strong share for 95% of strong's quality "
          f"{c.share_for(0.95):.1%}")  # fmt: skip
