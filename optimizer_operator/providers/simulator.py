"""The simulator provider: a model fleet defined in YAML, deterministic under a seed.

Each request's draw (latency, length, error, quality) comes from a random
generator seeded by the fleet seed, the model and the request id, so the same
requests give the same answers, and :meth:`SimulatedModel.expected_quality`
gives the exact oracle a benchmark needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .base import ChatChunk, ChatRequest, ChatResult, ProviderError
from .pricing import Price
from .tokens import count_messages

# The judge: a model of the server that compares two answers it served (pairwise
# judging in tests and benchmarks). Its verdicts follow the answers' hidden quality,
# with Gaussian noise, a tie band, and a position bias toward the first answer.
JUDGE_MODEL = "sim-judge"
JUDGE_PRICE = Price(Decimal("0.15"), Decimal("0.60"))  # priced like a small judge model
_TAG = re.compile(r"\[sim:([0-9a-f]{16})\]")
_ANSWERS = re.compile(r"Answer A:\n(?P<a>.*?)\n\s*Answer B:\n(?P<b>.*)", re.S)


@dataclass(frozen=True)
class JudgeSettings:
    """How the simulator's judge errs: P(it prefers A whatever the answers: "A", or
    "A>B" when asked for a graded verdict), the noise on the quality difference it sees,
    the difference below which it ties, and (graded) the one past which it says "much
    better"."""

    bias: float = 0.0
    noise: float = 0.1
    tie_margin: float = 0.02
    strong_margin: float = 0.15


_FILLER = (
    "Here is a careful answer that works through the question step by step, "
    "checks each intermediate result and states the final answer clearly. "
)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class QualityModel:
    base: float
    best_temperature: float
    temp_sensitivity: float
    best_top_p: float
    top_p_sensitivity: float
    truncation_penalty: float

    def untruncated(self, temperature: float, top_p: float) -> float:
        q = (
            self.base
            - self.temp_sensitivity * (temperature - self.best_temperature) ** 2
            - self.top_p_sensitivity * (top_p - self.best_top_p) ** 2
        )
        return min(1.0, max(0.0, q))


@dataclass(frozen=True)
class SimulatedModel:
    """One model of the fleet."""

    name: str
    price: Price
    ttft_median: float
    ttft_sigma: float
    tps_mean: float
    tps_stddev: float
    answer_median: int
    answer_sigma: float
    error_rate: float
    timeout_rate: float
    quality: QualityModel

    def truncation_probability(self, max_tokens: int | None) -> float:
        """P(natural answer length > max_tokens)."""
        if max_tokens is None:
            return 0.0
        if self.answer_sigma == 0:
            return 1.0 if self.answer_median > max_tokens else 0.0
        z = (math.log(max_tokens + 0.5) - math.log(self.answer_median)) / self.answer_sigma
        return 1.0 - _normal_cdf(z)

    def expected_quality(
        self, temperature: float = 1.0, top_p: float = 1.0, max_tokens: int | None = None
    ) -> float:
        """The exact mean quality score for these parameters (the benchmark oracle)."""
        q = self.quality.untruncated(temperature, top_p)
        p_trunc = self.truncation_probability(max_tokens)
        return q * (1.0 - p_trunc * self.quality.truncation_penalty)


@dataclass(frozen=True)
class Fleet:
    seed: int
    hang_seconds: float
    models: dict[str, SimulatedModel]


def _f(value: Any) -> float:
    return float(str(value))


def parse_fleet(document: Any, source: str = "fleet") -> Fleet:
    """A Fleet from its YAML document; ValueError names the bad entry."""
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise ValueError(f"{source}: expected a mapping with a 'models' mapping")
    models = {}
    for name, m in document["models"].items():
        try:
            q = m["quality"]
            models[name] = SimulatedModel(
                name=name,
                price=Price(Decimal(str(m["price"]["input"])), Decimal(str(m["price"]["output"]))),
                ttft_median=_f(m["ttftSeconds"]["median"]),
                ttft_sigma=_f(m["ttftSeconds"]["sigma"]),
                tps_mean=_f(m["tokensPerSecond"]["mean"]),
                tps_stddev=_f(m["tokensPerSecond"]["stddev"]),
                answer_median=int(m["answerTokens"]["median"]),
                answer_sigma=_f(m["answerTokens"]["sigma"]),
                error_rate=_f(m.get("errorRate", 0)),
                timeout_rate=_f(m.get("timeoutRate", 0)),
                quality=QualityModel(
                    base=_f(q["base"]),
                    best_temperature=_f(q["bestTemperature"]),
                    temp_sensitivity=_f(q["tempSensitivity"]),
                    best_top_p=_f(q["bestTopP"]),
                    top_p_sensitivity=_f(q["topPSensitivity"]),
                    truncation_penalty=_f(q["truncationPenalty"]),
                ),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"{source}: models.{name}: {exc!r}") from exc
    return Fleet(
        seed=int(document.get("seed", 0)),
        hang_seconds=_f(document.get("hangSeconds", 120)),
        models=models,
    )


def load_fleet(path: str | Path | None = None) -> Fleet:
    """The fleet from ``path``, $LLMOPT_SIMULATOR_FLEET, or the packaged default."""
    path = path or os.environ.get("LLMOPT_SIMULATOR_FLEET")
    if path:
        return parse_fleet(yaml.safe_load(Path(path).read_text()), str(path))
    text = resources.files(__package__).joinpath("data/simulator-fleet.yaml").read_text()
    return parse_fleet(yaml.safe_load(text), "default fleet")


@dataclass(frozen=True)
class Draw:
    """Everything random about one simulated request, drawn up front."""

    fails: bool
    hangs: bool
    ttft: float
    tokens_per_second: float
    answer_tokens: int
    truncated: bool
    output_tokens: int
    quality: float


class SimulatorProvider:
    """Answers from the simulated fleet; time can be scaled for demos (``time_scale``)."""

    name = "simulator"

    def __init__(
        self,
        fleet: Fleet | None = None,
        time_scale: float | None = None,
        judge: JudgeSettings | None = None,
    ) -> None:
        self.fleet = fleet or load_fleet()
        env_scale = os.environ.get("LLMOPT_SIMULATOR_TIME_SCALE")
        self.time_scale = time_scale if time_scale is not None else float(env_scale or 1.0)
        self.judge_settings = judge or JudgeSettings()
        # Each answer's hidden quality by its tag, for the judge (the newest 200,000).
        self._served: OrderedDict[str, float] = OrderedDict()

    def model(self, name: str) -> SimulatedModel:
        try:
            return self.fleet.models[name]
        except KeyError:
            raise ProviderError(
                404,
                "model_not_found",
                f"simulator has no model {name!r}; fleet: {', '.join(sorted(self.fleet.models))}",
            ) from None

    def draw(self, request: ChatRequest) -> Draw:
        """The request's random outcome: a pure function of seed, model, request id, attempt."""
        model = self.model(request.model)
        key = f"{self.fleet.seed}\0{model.name}\0{request.request_id}"
        if request.attempt > 1:  # a retry is a fresh upstream call with its own draw
            key += f"\0{request.attempt}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        params = request.parameters
        temperature = float(params.temperature) if params.temperature is not None else 1.0
        top_p = float(params.top_p) if params.top_p is not None else 1.0
        fails = rng.random() < model.error_rate
        hangs = rng.random() < model.timeout_rate
        ttft = model.ttft_median * math.exp(model.ttft_sigma * rng.gauss(0.0, 1.0))
        tps = max(1.0, rng.gauss(model.tps_mean, model.tps_stddev)) if model.tps_mean else 0.0
        answer = max(1, round(model.answer_median * math.exp(model.answer_sigma * rng.gauss(0, 1))))
        limit = params.max_tokens
        truncated = limit is not None and answer > limit
        output = min(answer, limit) if limit is not None else answer
        mean = model.quality.untruncated(temperature, top_p)
        if truncated:
            mean *= 1.0 - model.quality.truncation_penalty
        # Beta with concentration 20 around the mean: continuous, bounded, exact mean.
        k = 20.0
        if mean <= 0.0:
            quality = 0.0
        elif mean >= 1.0:
            quality = 1.0
        else:
            quality = rng.betavariate(mean * k, (1.0 - mean) * k)
        return Draw(fails, hangs, ttft, tps, answer, truncated, output, quality)

    def _text(self, request: ChatRequest, draw: Draw) -> str:
        """Filler of the answer's length, ending in a tag naming the answer (so the
        judge, told two answers, knows which it served and how good each was)."""
        target = draw.output_tokens * 4
        body = (_FILLER * (target // len(_FILLER) + 1))[: max(0, target - 1)]
        key = f"{self.fleet.seed}\0{request.model}\0{request.request_id}\0{request.attempt}"
        tag = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        self._served[tag] = draw.quality
        if len(self._served) > 200_000:
            self._served.popitem(last=False)
        return f"{body}. [sim:{tag}]"

    def quality_of(self, answer: str) -> float | None:
        """The hidden quality of an answer this simulator served, if it did."""
        found = _TAG.search(answer)
        return None if found is None else self._served.get(found.group(1))

    def judge(self, request: ChatRequest) -> ChatResult:
        """A pairwise verdict on the two answers in the prompt ("Answer A:" ...
        "Answer B:"): as JSON ``{"winner": "A" | "B" | "tie"}``; graded when the prompt
        asks for a ``"verdict"`` (``"A>>B"``, ``"A>B"``, ``"A=B"``, ``"B>A"``,
        ``"B>>A"``); or both answers scored 1-5 when it asks for ``{"A": <1-5>, ...}``.
        A prompt without two answers it served gets a reply with no verdict (as a
        confused judge would)."""
        prompt = "\n".join(str(m.get("content", "")) for m in request.messages)
        found = _ANSWERS.search(prompt)
        qa = self.quality_of(found.group("a")) if found else None
        qb = self.quality_of(found.group("b")) if found else None
        key = f"{self.fleet.seed}\0judge\0{request.request_id}\0{request.attempt}"
        rng = random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()))
        biased = rng.random() < self.judge_settings.bias  # drawn always: same noise either way
        noise = rng.gauss(0.0, self.judge_settings.noise)
        # What is asked is read from the instructions, never from the request or answers.
        asked = prompt.split("\nUser request:", 1)[0]
        if qa is None or qb is None:
            text = "I cannot tell which answer is which."
        elif '"A": <1-5>' in asked:
            # Side by side, each answer scored 1-5 from its quality as seen (the noise
            # split between the two, so their difference has the noise asked for).
            sd = self.judge_settings.noise / math.sqrt(2.0)
            a, b = (
                min(max(round((q + rng.gauss(0.0, sd)) * 4.0), 0), 4) + 1 for q in (qa, qb)
            )
            if biased:  # A scored above B, whatever they are
                a, b = max(a, b + 1) if b < 5 else 5, min(b, 4)
            text = json.dumps({"A": a, "B": b})
        elif '"verdict"' in asked:
            d = qa - qb + noise
            margin, strong = self.judge_settings.tie_margin, self.judge_settings.strong_margin
            grade = (
                "A>B" if biased
                else "A>>B" if d > strong
                else "A>B" if d > margin
                else "B>>A" if d < -strong
                else "B>A" if d < -margin
                else "A=B"
            )  # fmt: skip
            text = json.dumps({"verdict": grade})
        else:
            d = qa - qb + noise
            margin = self.judge_settings.tie_margin
            winner = "A" if biased or d > margin else "B" if d < -margin else "tie"
            text = json.dumps({"winner": winner})
        return ChatResult(
            text=text,
            finish_reason="stop",
            input_tokens=count_messages(request.messages),
            output_tokens=8,
            model=request.model,
        )

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds * self.time_scale)

    def _result(self, request: ChatRequest, draw: Draw) -> ChatResult:
        return ChatResult(
            text=self._text(request, draw),
            finish_reason="length" if draw.truncated else "stop",
            input_tokens=count_messages(request.messages),
            output_tokens=draw.output_tokens,
            model=request.model,
            ground_truth=draw.quality,
            time_to_first_token=draw.ttft * self.time_scale,
        )

    async def _start(self, request: ChatRequest) -> Draw:
        draw = self.draw(request)
        if draw.hangs:
            await self._sleep(self.fleet.hang_seconds)
        if draw.fails:
            await self._sleep(draw.ttft)
            raise ProviderError(
                503, "upstream_unavailable", "simulated upstream error", retryable=True
            )
        await self._sleep(draw.ttft)
        return draw

    async def complete(self, request: ChatRequest) -> ChatResult:
        if request.model == JUDGE_MODEL:
            return self.judge(request)
        draw = await self._start(request)
        if draw.tokens_per_second:
            await self._sleep(draw.output_tokens / draw.tokens_per_second)
        return self._result(request, draw)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if request.model == JUDGE_MODEL:
            verdict = self.judge(request)
            yield ChatChunk(delta=verdict.text)
            yield ChatChunk(delta="", result=verdict)
            return
        draw = await self._start(request)
        result = self._result(request, draw)
        text = result.text
        pieces = max(1, min(20, draw.output_tokens // 8))
        size = -(-len(text) // pieces)
        for i in range(pieces):
            if i and draw.tokens_per_second:
                await self._sleep(draw.output_tokens / pieces / draw.tokens_per_second)
            yield ChatChunk(delta=text[i * size : (i + 1) * size])
        yield ChatChunk(delta="", result=result)

    async def close(self) -> None:
        return None


def fleet_prices(fleet: Fleet) -> dict[str, Price]:
    """The fleet's prices, to merge into the pricing catalog."""
    return {**{name: m.price for name, m in fleet.models.items()}, JUDGE_MODEL: JUDGE_PRICE}
