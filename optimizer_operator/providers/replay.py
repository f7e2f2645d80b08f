"""The replay provider: answer a prompt with a model's recorded response.

Datasets are either the wide CSV of ``../shared/data/gsm8k_responses.csv``
(``prompt``, ``<model>`` correctness, ``<model>_response``) or the JSONL the
gateway records (one ``{"prompt", "model", "response", "correct"}`` a line).
The correctness label is the ground truth; the response's real length drives
tokens, cost and truncation at ``max_tokens`` (a truncated answer loses its
final line, so it counts as wrong). Latency is simulated from per-model speeds.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .base import ChatChunk, ChatRequest, ChatResult, ProviderError
from .tokens import count_messages, count_text, prompt_text, truncate_to_tokens

DEFAULT_DATASET = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k_responses.csv"
)


@dataclass(frozen=True)
class Recorded:
    response: str
    correct: bool | None


@dataclass(frozen=True)
class Speed:
    ttft_seconds: float
    tokens_per_second: float


DEFAULT_SPEEDS = {
    "gpt-4-1106-preview": Speed(0.50, 35.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": Speed(0.20, 80.0),
}
FALLBACK_SPEED = Speed(0.30, 60.0)


def _key(prompt: str) -> str:
    return " ".join(prompt.split())


class ReplayDataset:
    """Prompt -> model -> recorded response and correctness."""

    def __init__(self, records: dict[str, dict[str, Recorded]], source: str) -> None:
        self.records = records
        self.source = source

    @property
    def models(self) -> list[str]:
        return sorted({m for by_model in self.records.values() for m in by_model})

    def prompts(self) -> list[str]:
        return list(self.records)

    def lookup(self, prompt: str, model: str) -> Recorded:
        by_model = self.records.get(_key(prompt))
        if by_model is None:
            raise ProviderError(
                404,
                "prompt_not_in_dataset",
                f"replay: this prompt is not in the dataset {Path(self.source).name}",
            )
        try:
            return by_model[model]
        except KeyError:
            raise ProviderError(
                404,
                "model_not_found",
                f"replay: no recorded responses for model {model!r}; "
                f"dataset has {', '.join(sorted(by_model))}",
            ) from None

    @classmethod
    def load(cls, path: str | Path) -> ReplayDataset:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"replay dataset not found: {path}")
        records: dict[str, dict[str, Recorded]] = {}
        if path.suffix == ".jsonl":
            with path.open() as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        correct = row.get("correct")
                        records.setdefault(_key(row["prompt"]), {})[row["model"]] = Recorded(
                            row["response"], None if correct is None else bool(correct)
                        )
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise ValueError(f"{path}:{n}: not a replay record ({exc})") from exc
            return cls(records, str(path))
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            models = [c[: -len("_response")] for c in columns if c.endswith("_response")]
            if "prompt" not in columns or not models:
                raise ValueError(f"{path}: expected columns prompt, <model>, <model>_response")
            for row in reader:
                by_model = records.setdefault(_key(row["prompt"]), {})
                for model in models:
                    label = (row.get(model) or "").strip().lower()
                    by_model[model] = Recorded(
                        row[f"{model}_response"],
                        True if label == "true" else False if label == "false" else None,
                    )
        return cls(records, str(path))


_CACHE: dict[str, ReplayDataset] = {}


def dataset_path() -> Path:
    return Path(os.environ.get("LLMOPT_REPLAY_DATASET", str(DEFAULT_DATASET)))


def load_dataset(path: str | Path | None = None) -> ReplayDataset:
    """The dataset at ``path`` (default $LLMOPT_REPLAY_DATASET or shared/data), cached."""
    key = str(Path(path) if path else dataset_path())
    if key not in _CACHE:
        _CACHE[key] = ReplayDataset.load(key)
    return _CACHE[key]


class ReplayProvider:
    """Answers with recorded responses; latency from per-model speeds times ``time_scale``."""

    name = "replay"

    def __init__(
        self,
        dataset: ReplayDataset | None = None,
        speeds: dict[str, Speed] | None = None,
        time_scale: float | None = None,
    ) -> None:
        self._dataset = dataset
        self.speeds = {**DEFAULT_SPEEDS, **(speeds or {})}
        env_scale = os.environ.get("LLMOPT_SIMULATOR_TIME_SCALE")
        self.time_scale = time_scale if time_scale is not None else float(env_scale or 1.0)

    @property
    def dataset(self) -> ReplayDataset:
        if self._dataset is None:
            try:
                self._dataset = load_dataset()
            except (FileNotFoundError, ValueError) as exc:
                raise ProviderError(503, "replay_dataset_unavailable", str(exc)) from None
        return self._dataset

    def answer(self, request: ChatRequest) -> ChatResult:
        recorded = self.dataset.lookup(prompt_text(request.messages), request.model)
        text = recorded.response
        tokens = count_text(text)
        limit = request.parameters.max_tokens
        truncated = limit is not None and tokens > limit
        if truncated:
            assert limit is not None
            text, tokens = truncate_to_tokens(text, limit), limit
        truth = None if recorded.correct is None else float(recorded.correct and not truncated)
        speed = self.speeds.get(request.model, FALLBACK_SPEED)
        return ChatResult(
            text=text,
            finish_reason="length" if truncated else "stop",
            input_tokens=count_messages(request.messages),
            output_tokens=tokens,
            model=request.model,
            ground_truth=truth,
            time_to_first_token=speed.ttft_seconds * self.time_scale,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        result = self.answer(request)
        speed = self.speeds.get(request.model, FALLBACK_SPEED)
        await asyncio.sleep(
            (speed.ttft_seconds + result.output_tokens / speed.tokens_per_second) * self.time_scale
        )
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        result = self.answer(request)
        speed = self.speeds.get(request.model, FALLBACK_SPEED)
        await asyncio.sleep(speed.ttft_seconds * self.time_scale)
        pieces = max(1, min(20, result.output_tokens // 8))
        size = -(-len(result.text) // pieces)
        for i in range(pieces):
            if i:
                await asyncio.sleep(
                    result.output_tokens / pieces / speed.tokens_per_second * self.time_scale
                )
            yield ChatChunk(delta=result.text[i * size : (i + 1) * size])
        yield ChatChunk(delta="", result=result)

    async def close(self) -> None:
        return None
