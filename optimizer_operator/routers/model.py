"""A linear router: the chance that the cheaper configuration's answer is good enough,
from hashed features of the request (and, for a cascade, of the cheap answer).

Trained by L2-regularised logistic regression (L-BFGS); the regularisation is chosen
by cross-validation on the training data alone. The artifact is JSON small enough for a
ConfigMap: the largest weights, packed and compressed, with a digest, so a corrupt or
incompatible file is refused rather than scoring nonsense.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # scipy is for training only: scoring (the gateway) runs without it
    from scipy import sparse

from .features import DIMS, matrix, vector

KIND = "llm-optimizer/router"
VERSION = 1
Mode = Literal["prompt", "cascade"]
# Regularisation strengths tried (inverse: larger is weaker), by inner cross-validation.
C_GRID = (1.0, 4.0, 16.0)
MAX_WEIGHTS = 40_000


def _fit(x: sparse.csr_matrix, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    # Only the columns some row uses: the others get no gradient but the penalty's, so
    # they stay at their start, zero; fitting without them is the same fit, faster.
    dims = x.shape[1]
    used = np.unique(x.indices)
    x = x[:, used]
    n = x.shape[0]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w[:-1] + w[-1]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        eps = 1e-12
        value = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
        value += 0.5 / (c * n) * float(w[:-1] @ w[:-1])
        grad = np.append(x.T @ (p - y) / n + w[:-1] / (c * n), np.mean(p - y))
        return float(value), grad

    found = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"maxiter": 400})  # fmt: skip
    w = np.zeros(dims)
    w[used] = found.x[:-1]
    return w, float(found.x[-1])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half), by ranks."""
    pos, neg = labels.sum(), (1 - labels).sum()
    if pos == 0 or neg == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def choose_c(x: sparse.csr_matrix, y: np.ndarray, seed: int = 0, folds: int = 2) -> float:
    """The regularisation with the best mean AUC over ``folds`` splits of this data."""
    split = np.random.default_rng(seed).permutation(len(y)) % folds
    best, best_auc = C_GRID[0], -1.0
    for c in C_GRID:
        scores = []
        for k in range(folds):
            w, b = _fit(x[split != k], y[split != k], c)
            scores.append(auc(x[split == k] @ w + b, y[split == k]))
        if float(np.mean(scores)) > best_auc:
            best, best_auc = c, float(np.mean(scores))
    return best


def fields_of(mode: Mode, prompt: str, cheap_answer: str | None) -> list[tuple[str, str]]:
    """What a router reads of one request."""
    if mode == "prompt":
        return [("q", prompt)]
    return [("q", prompt), ("a", cheap_answer or "")]


@dataclass
class Router:
    """P(cheap answer good) = sigmoid(w . features + b)."""

    mode: Mode
    weights: dict[int, float]
    bias: float
    cheap: str = ""
    strong: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def train(
        cls,
        mode: Mode,
        prompts: Sequence[str],
        cheap_good: Sequence[bool],
        cheap_answers: Sequence[str] | None = None,
        *,
        cheap: str = "",
        strong: str = "",
        c: float | None = None,
        seed: int = 0,
    ) -> Router:
        if mode == "cascade" and cheap_answers is None:
            raise ValueError("a cascade router needs the cheap model's answers")
        rows = [fields_of(mode, p, cheap_answers[i] if cheap_answers else None)
                for i, p in enumerate(prompts)]  # fmt: skip
        x, y = matrix(rows), np.asarray(cheap_good, dtype=float)
        if y.min() == y.max():
            raise ValueError("the labels are all the same: nothing to learn a route from")
        chosen = c if c is not None else choose_c(x, y, seed)
        w, b = _fit(x, y, chosen)
        keep = np.argsort(-np.abs(w))[:MAX_WEIGHTS]
        weights = {int(i): float(w[i]) for i in keep if w[i] != 0.0}
        meta = {"rows": len(y), "c": chosen, "cheapAccuracy": float(y.mean())}
        return cls(mode, weights, b, cheap, strong, meta)

    def score(self, prompt: str, cheap_answer: str | None = None) -> float:
        """P(the cheap answer is good enough) for one request."""
        z = self.bias + sum(
            self.weights.get(i, 0.0) * v
            for i, v in vector(fields_of(self.mode, prompt, cheap_answer)).items()
        )
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def scores(
        self, prompts: Sequence[str], cheap_answers: Sequence[str] | None = None
    ) -> np.ndarray:
        rows = [fields_of(self.mode, p, cheap_answers[i] if cheap_answers else None)
                for i, p in enumerate(prompts)]  # fmt: skip
        w = np.zeros(DIMS)
        for i, v in self.weights.items():
            w[i] = v
        z = np.clip(matrix(rows) @ w + self.bias, -30, 30)
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    # -- artifact ------------------------------------------------------------

    def to_artifact(self) -> dict[str, Any]:
        idx = np.asarray(sorted(self.weights), dtype="<i4")
        val = np.asarray([self.weights[int(i)] for i in idx], dtype="<f4")
        packed = zlib.compress(idx.tobytes() + val.tobytes(), 9)
        return {
            "kind": KIND,
            "version": VERSION,
            "mode": self.mode,
            "features": {"hash": "crc32", "dims": DIMS, "ngrams": 2},
            "models": {"cheap": self.cheap, "strong": self.strong},
            "bias": self.bias,
            "count": len(idx),
            "weights": base64.b64encode(packed).decode(),
            "digest": hashlib.sha256(packed).hexdigest(),
            "trainedOn": self.meta,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_artifact(), sort_keys=True)

    @classmethod
    def from_artifact(cls, doc: object) -> Router:
        """The router in an artifact; ValueError says what is wrong with it."""
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError(f"not a router artifact (kind is not {KIND!r})")
        if doc.get("version") != VERSION:
            raise ValueError(f"router artifact version {doc.get('version')!r}; this "
                             f"gateway reads version {VERSION}")  # fmt: skip
        features = doc.get("features") or {}
        if features != {"hash": "crc32", "dims": DIMS, "ngrams": 2}:
            raise ValueError(f"router artifact features {features!r} are not this gateway's")
        if doc.get("mode") not in ("prompt", "cascade"):
            raise ValueError(f"router artifact mode {doc.get('mode')!r}")
        try:
            packed = base64.b64decode(str(doc["weights"]), validate=True)
            if hashlib.sha256(packed).hexdigest() != doc.get("digest"):
                raise ValueError("router artifact digest does not match its weights")
            raw = zlib.decompress(packed)
            count = int(doc["count"])
            if len(raw) != 8 * count:
                raise ValueError("router artifact weights are truncated")
            idx = np.frombuffer(raw[: 4 * count], dtype="<i4")
            val = np.frombuffer(raw[4 * count :], dtype="<f4")
            bias = float(doc["bias"])
        except (KeyError, TypeError, zlib.error, binascii.Error) as exc:
            raise ValueError(f"router artifact is corrupt: {exc}") from None
        if (len(idx) and (idx.min() < 0 or idx.max() >= DIMS)) or not math.isfinite(bias):
            raise ValueError("router artifact weights are out of range")
        if not np.all(np.isfinite(val)):
            raise ValueError("router artifact has weights that are not finite")
        models = doc.get("models") or {}
        return cls(doc["mode"], dict(zip(idx.tolist(), val.tolist(), strict=True)), bias,
                   str(models.get("cheap", "")), str(models.get("strong", "")),
                   dict(doc.get("trainedOn") or {}))  # fmt: skip

    @classmethod
    def loads(cls, text: str) -> Router:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"router artifact is not JSON: {exc}") from None
        return cls.from_artifact(doc)
