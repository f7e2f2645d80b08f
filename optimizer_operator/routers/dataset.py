"""Replay datasets read by their columns' meaning, not their positions.

A dataset is a CSV or JSONL file (wide) with a prompt column (``prompt``, or ``question`` /
``input``), one correctness column per model (every value a boolean: True/False,
true/false, 1/0, yes/no), and optionally ``<model>_response`` with that model's answer
text. Any other column is ignored, so a file with extra columns (ids, categories,
timings) reads the same. The gateway's own recordings (JSONL, one answer a line with
``prompt``, ``model``, ``response`` and its ``correct`` label) are read too, pivoted to
a prompt per row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_COLUMNS = ("prompt", "question", "input")
RESPONSE_SUFFIX = "_response"
_TRUE = {"true", "1", "yes", "1.0"}
_FALSE = {"false", "0", "no", "0.0"}


@dataclass(frozen=True)
class Dataset:
    """Prompts, and per model whether its answer was correct (and its text, if known)."""

    prompts: list[str]
    correct: dict[str, list[bool]]
    responses: dict[str, list[str]] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()

    @property
    def models(self) -> list[str]:
        return list(self.correct)

    def accuracy(self, model: str) -> float:
        marks = self.correct[model]
        return sum(marks) / len(marks)


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _rows(path: Path) -> list[dict[str, object]]:
    if path.suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{n}: each line must be a JSON object")
                rows.append(row)
        return rows
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _long(path: Path, rows: list[dict[str, object]], min_models: int) -> Dataset:
    """The gateway's recordings (``--record``): one ``{"prompt", "model", "response",
    "correct"}`` a line, pivoted to a prompt per row. A prompt counts for a model when
    one of its answers was labelled (the last label wins); the rows kept are the prompts
    labelled for every model."""
    labels: dict[str, dict[str, tuple[bool, str]]] = {}
    for row in rows:
        prompt, model = str(row.get("prompt") or ""), str(row.get("model") or "")
        mark = _boolean(row.get("correct")) if row.get("correct") is not None else None
        if not prompt or not model or mark is None:
            continue
        if prompt.startswith("sha256:"):
            raise ValueError(f"{path}: the prompts were recorded with --record-redaction "
                             "hash: there is no text to learn a route from")  # fmt: skip
        labels.setdefault(prompt, {})[model] = (mark, str(row.get("response") or ""))
    models = sorted({m for by in labels.values() for m in by})
    if len(models) < min_models:
        raise ValueError(f"{path}: labelled answers of {len(models)} model(s), want "
                         f"{min_models} or more")  # fmt: skip
    kept = [p for p, by in labels.items() if all(m in by for m in models)]
    if not kept:
        raise ValueError(f"{path}: no prompt has a labelled answer of every model")
    return Dataset(
        prompts=kept,
        correct={m: [labels[p][m][0] for p in kept] for m in models},
        responses={m: [labels[p][m][1] for p in kept] for m in models},
        ignored=(),
    )


def load(path: str | Path, min_models: int = 2) -> Dataset:
    """The dataset at ``path``; ValueError names what is missing. ``min_models``: how
    many models need correctness labels (a router learns from the cheap one's alone)."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    if {"prompt", "model", "correct"} <= set(rows[0]):
        return _long(path, rows, min_models)
    columns = list(rows[0])
    prompt = next((c for c in PROMPT_COLUMNS if c in columns), None)
    if prompt is None:
        raise ValueError(f"{path}: no prompt column (one of {', '.join(PROMPT_COLUMNS)})")
    correct: dict[str, list[bool]] = {}
    for column in columns:
        if column == prompt or column.endswith(RESPONSE_SUFFIX):
            continue
        marks = [_boolean(r.get(column)) for r in rows]
        if all(m is not None for m in marks):
            correct[column] = [bool(m) for m in marks]
    if len(correct) < min_models:
        raise ValueError(
            f"{path}: want {min_models} or more correctness columns (True/False per "
            f"model), found {len(correct)}: {', '.join(correct) or 'none'}"
        )
    responses = {
        m: [str(r.get(m + RESPONSE_SUFFIX) or "") for r in rows]
        for m in correct
        if m + RESPONSE_SUFFIX in columns
    }
    used = {prompt, *correct, *(m + RESPONSE_SUFFIX for m in responses)}
    return Dataset(
        prompts=[str(r.get(prompt) or "") for r in rows],
        correct=correct,
        responses=responses,
        ignored=tuple(c for c in columns if c not in used),
    )
