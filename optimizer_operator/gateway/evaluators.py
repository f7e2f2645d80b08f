"""Quality evaluators, chosen by name with a sampling rate each, run off the request path.

Scoring happens in a bounded queue drained by background workers; when the
queue is full the evaluation is dropped and counted, never the request.
CPU-bound scorers run in a thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..api.llmconfig import Endpoint, Parameters
from ..providers import ChatRequest, ProviderError
from ..providers import create as create_provider
from . import scoring
from .metrics import GatewayMetrics
from .pairwise import PairwiseSettings

PAIRWISE = "pairwise"  # judged by the gateway against stable, not through this queue

log = logging.getLogger("llmopt.gateway.evaluators")
MAX_EDIT_CHARS = 500  # Levenshtein is quadratic; longer texts are compared on their prefix


@dataclass(frozen=True)
class Sample:
    """One answered request, as evaluators see it."""

    response_id: str
    llm_config: str
    variant: str
    prompt: str
    response: str
    finish_reason: str
    reference: str | None = None
    ground_truth: float | None = None


class Evaluator(Protocol):
    name: str

    async def score(self, sample: Sample) -> float | None:
        """A score in [0, 1], or None when the evaluator does not apply to ``sample``."""


@dataclass
class FunctionEvaluator:
    """An evaluator from a pure function; runs in a worker thread."""

    name: str
    fn: Callable[[Sample], float | None]

    async def score(self, sample: Sample) -> float | None:
        return await asyncio.get_running_loop().run_in_executor(None, self.fn, sample)


@dataclass
class GroundTruthEvaluator:
    """The provider's own label (replay correctness, the simulator's quality model)."""

    name: str = "ground_truth"

    async def score(self, sample: Sample) -> float | None:
        return sample.ground_truth


def _needs_reference(fn: Callable[[str, str], float]) -> Callable[[Sample], float | None]:
    def run(sample: Sample) -> float | None:
        return None if sample.reference is None else fn(sample.response, sample.reference)

    return run


JUDGE_RUBRIC = (
    "You are grading an AI assistant's answer. Score it from 1 (wrong or unhelpful) to 5 "
    "(correct, complete and clear) for how well it answers the user's request. "
    'Reply with JSON only: {{"score": <1-5>, "reason": "<one sentence>"}}.\n\n'
    "User request:\n{prompt}\n\nAssistant answer:\n{response}"
)
_SCORE = re.compile(r'"score"\s*:\s*([1-5](?:\.\d+)?)')


@dataclass
class JudgeEvaluator:
    """LLM-as-judge through the same providers; results cached by content hash."""

    provider: str
    model: str
    endpoint: Endpoint | None = None
    cache_size: int = 10000
    name: str = "llm_judge"
    _cache: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _client: Any = None

    async def score(self, sample: Sample) -> float | None:
        key = hashlib.blake2b(
            f"{self.provider}\0{self.model}\0{sample.prompt}\0{sample.response}".encode(),
            digest_size=16,
        ).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._client is None:
            self._client = create_provider(self.provider)
        prompt = JUDGE_RUBRIC.format(prompt=sample.prompt[:4000], response=sample.response[:8000])
        result = await self._client.complete(
            ChatRequest(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                parameters=Parameters(temperature="0", max_tokens=200),
                request_id=f"judge-{key[:16]}",
                endpoint=self.endpoint,
            )
        )
        match = _SCORE.search(result.text)
        if match is None:
            raise ValueError("judge reply has no score")
        value = (float(match.group(1)) - 1.0) / 4.0
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value


def build_evaluator(name: str, options: dict[str, Any]) -> Evaluator:
    """An evaluator by name; ValueError lists the known names."""
    builders: dict[str, Callable[[], Evaluator]] = {
        "ground_truth": GroundTruthEvaluator,
        "length": lambda: FunctionEvaluator(
            "length",
            lambda s: scoring.length_score(
                s.response, int(options.get("minChars", 1)), int(options.get("maxChars", 4000))
            ),
        ),
        "json": lambda: FunctionEvaluator(
            "json",
            partial(
                lambda schema, s: scoring.json_score(s.response, schema), options.get("schema")
            ),
        ),
        "refusal": lambda: FunctionEvaluator(
            "refusal", lambda s: scoring.refusal_score(s.response)
        ),
        "exact_match": lambda: FunctionEvaluator(
            "exact_match", _needs_reference(scoring.exact_match)
        ),
        "numeric_answer": lambda: FunctionEvaluator(
            "numeric_answer", _needs_reference(scoring.numeric_answer)
        ),
        "edit_similarity": lambda: FunctionEvaluator(
            "edit_similarity",
            _needs_reference(
                lambda a, b: scoring.edit_similarity(a[:MAX_EDIT_CHARS], b[:MAX_EDIT_CHARS])
            ),
        ),
        "rouge_l": lambda: FunctionEvaluator("rouge_l", _needs_reference(scoring.rouge_l)),
        "bleu": lambda: FunctionEvaluator("bleu", _needs_reference(scoring.bleu)),
        "llm_judge": lambda: JudgeEvaluator(
            provider=str(options.get("provider", "openai")),
            model=str(options["model"]) if "model" in options else _missing("llm_judge", "model"),
            endpoint=Endpoint.model_validate(options["endpoint"])
            if "endpoint" in options
            else None,
        ),
    }
    if name not in builders:
        known = ", ".join(sorted([*builders, PAIRWISE]))
        raise ValueError(f"unknown evaluator {name!r}; known: {known}")
    return builders[name]()


def check_specs(specs: list[EvaluatorSpec]) -> None:
    """Every evaluator buildable as configured (pairwise judging included); a
    ValueError naming the first that is not."""
    for spec in specs:
        if spec.name == PAIRWISE:
            PairwiseSettings.from_options(spec.rate, spec.options)
        else:
            build_evaluator(spec.name, spec.options)


def _missing(evaluator: str, option: str) -> str:
    raise ValueError(f"evaluator {evaluator} needs option {option!r}")


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    rate: float
    options: dict[str, Any] = field(default_factory=dict)


def parse_specs(text: str) -> list[EvaluatorSpec]:
    """``"ground_truth=1,refusal=0.2"`` (name=rate, rate defaults to 1) or a JSON list of
    ``{"name", "rate", "options"}`` for evaluators with options."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return [
            EvaluatorSpec(d["name"], float(d.get("rate", 1.0)), dict(d.get("options", {})))
            for d in json.loads(text)
        ]
    specs = []
    for part in text.split(","):
        name, _, rate = part.strip().partition("=")
        value = float(rate) if rate else 1.0
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"evaluator {name}: rate must be within 0..1, got {rate}")
        specs.append(EvaluatorSpec(name, value))
    return specs


class EvaluationQueue:
    """A bounded queue of (evaluator, sample) drained by background workers."""

    def __init__(
        self,
        specs: list[EvaluatorSpec],
        metrics: GatewayMetrics,
        *,
        maxsize: int = 2000,
        workers: int = 2,
        timeout: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.evaluators = [(build_evaluator(s.name, s.options), s.rate) for s in specs]
        self.metrics = metrics
        self.timeout = timeout
        self._queue: asyncio.Queue[tuple[Evaluator, Sample]] = asyncio.Queue(maxsize=maxsize)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(seed)

    def submit(self, sample: Sample) -> None:
        """Queue the sample for each evaluator picked by its sampling rate; never blocks."""
        for evaluator, rate in self.evaluators:
            if rate < 1.0 and self._rng.random() >= rate:
                continue
            try:
                self._queue.put_nowait((evaluator, sample))
            except asyncio.QueueFull:
                self.metrics.eval_dropped.labels(evaluator.name).inc()

    def observe(self, llm_config: str, variant: str, evaluator: str, value: float) -> None:
        self.metrics.quality.labels(self.metrics.ns, llm_config, variant, evaluator).observe(
            min(1.0, max(0.0, value))
        )

    async def _work(self) -> None:
        while True:
            evaluator, sample = await self._queue.get()
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives with the result, and stop() would wait forever.
                async with asyncio.timeout(self.timeout):
                    value = await evaluator.score(sample)
            except (TimeoutError, ProviderError, ValueError, OSError) as exc:
                log.debug("evaluator %s failed: %s", evaluator.name, exc)
                self.metrics.evaluations.labels(evaluator.name, "error").inc()
            else:
                if value is None:
                    self.metrics.evaluations.labels(evaluator.name, "not_applicable").inc()
                else:
                    self.observe(sample.llm_config, sample.variant, evaluator.name, value)
                    self.metrics.evaluations.labels(evaluator.name, "ok").inc()
            finally:
                self._queue.task_done()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def drain(self) -> None:
        """Wait until every queued evaluation is done (tests, shutdown)."""
        await self._queue.join()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
