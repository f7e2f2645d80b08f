"""The gateway's recordings (``--record``) of one LLMConfig, read as labelled answers of
one model: what a router is retrained on.

The operator reads them from its recordings directory (``LLMOPT_RECORDINGS_DIR``: a
volume the gateways write their ``--record`` files to, ``*.jsonl`` at any depth). A line
counts when it names this LLMConfig (and its namespace, when the line has one), this
model, and a label (``correct`` true or false); the newest ``limit`` prompts are kept, a
prompt's last label winning. Lines that are not JSON objects are skipped and counted;
prompts recorded with ``--record-redaction hash`` carry no text and are counted apart.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

# Most bytes read from one file: recordings are append-only and a reader must not hold
# a runaway file in memory (the newest lines are what counts: read from the end).
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class Labelled:
    """Labelled answers of one model, oldest first."""

    prompts: list[str] = field(default_factory=list)
    good: list[bool] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    files: int = 0
    unreadable: int = 0  # lines that are not JSON objects
    hashed: int = 0  # prompts recorded as a hash only

    def summary(self) -> str:
        parts = [f"{len(self.prompts)} labelled answers in {self.files} file(s)"]
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable line(s) skipped")
        if self.hashed:
            parts.append(f"{self.hashed} hashed prompt(s) skipped (--record-redaction hash)")
        return ", ".join(parts)


def _lines(path: Path) -> list[str]:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > MAX_FILE_BYTES:
            f.seek(size - MAX_FILE_BYTES)
            f.readline()  # a partial line
        data = f.read(MAX_FILE_BYTES)
    return data.decode("utf-8", errors="replace").splitlines()


def labelled_answers(
    directory: Path, namespace: str, llm_config: str, model: str, limit: int
) -> Labelled:
    """The newest ``limit`` labelled answers of ``model`` for ``namespace/llm_config``."""
    out = Labelled()
    files = sorted(directory.rglob("*.jsonl"), key=lambda p: (p.stat().st_mtime, str(p)))
    rows: list[tuple[float, str, bool, str]] = []
    for path in files:
        try:
            lines = _lines(path)
        except OSError:
            out.unreadable += 1
            continue
        out.files += 1
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                out.unreadable += 1
                continue
            if not isinstance(row, dict):
                out.unreadable += 1
                continue
            if row.get("llm_config") != llm_config or row.get("model") != model:
                continue
            if row.get("namespace") not in (None, "", namespace):
                continue
            correct, prompt = row.get("correct"), row.get("prompt")
            if not isinstance(correct, bool) or not isinstance(prompt, str) or not prompt:
                continue
            if prompt.startswith("sha256:"):
                out.hashed += 1
                continue
            ts = row.get("ts")
            when = float(ts) if isinstance(ts, int | float) else 0.0
            rows.append((when, prompt, correct, str(row.get("response") or "")))
    rows.sort(key=lambda r: r[0])  # stable: files oldest first, lines in order
    newest: OrderedDict[str, tuple[bool, str]] = OrderedDict()
    for _, prompt, correct, answer in rows:
        newest.pop(prompt, None)
        newest[prompt] = (correct, answer)
    kept = list(newest.items())[-limit:]
    out.prompts = [p for p, _ in kept]
    out.good = [g for _, (g, _) in kept]
    out.answers = [a for _, (_, a) in kept]
    return out
