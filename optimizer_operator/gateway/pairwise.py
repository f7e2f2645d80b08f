"""Pairwise judging against stable: for a sampled share of the requests a candidate
answers, stable's answer to the same request is obtained off the user's path and a
judge model is asked, blind, which of the two is better — in both orders by default, so
a judge's preference for the first (or second) answer cancels, or (``orders: 1``) in one
drawn at random, where it cancels on average — ties allowed.

The user gets the candidate's answer as always: the pair is judged in the background
after the response went out, bounded in concurrency, and within a spend cap (USD per
hour, shadow and judge calls together). The shadow answer is not counted as a request
of stable, and what evaluation costs goes to ``llmopt_evaluation_cost_usd_total``,
never into a variant's cost per request. A judge that errors, times out or answers
something that is not a verdict is counted and skipped: never a verdict.

Each shadowed pair also gets a cheap reference-free number, the lexical similarity of
the two answers (``gateway.similarity``), exported as ``llmopt_stable_similarity``.

The verdict is graded by default, on five points (much better, better, as good, worse,
much worse: the first answer's score 1, 3/4, 1/2, 1/4, 0); with ``scale: winner`` a
plain A, B or tie (1, 1/2, 0); with ``scale: scores`` the judge scores both answers
side by side from 1 to 5 in one call (the first answer's score (4 + a - b) / 8; in
bench/results/judging.md it needed the fewest judge calls in most worlds). A pair's
score for the candidate is the mean of its scores over the orders judged, so an answer
much better in both orders scores 1 and two orders that disagree (what position bias
looks like) meet in the middle. The scores are exported as the histogram
``llmopt_pairwise_score`` (its buckets at every value a score can take, so its variance
is exact); ``win_rate`` is their mean. The outcome counter ``llmopt_pairwise_total``
says win (score above 1/2), loss (below) or tie.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..api.llmconfig import Endpoint, Parameters
from ..api.variants import Variant
from ..providers import ChatRequest, ChatResult, Provider, ProviderError
from ..providers.pricing import PricingCatalog
from ..providers.tokens import prompt_text
from .metrics import GatewayMetrics
from .routing import request_as
from .similarity import similarity

log = logging.getLogger("llmopt.gateway.pairwise")
Outcome = Literal["win", "loss", "tie"]
Verdict = Literal["A", "B", "tie"]
Scale = Literal["graded", "winner", "scores"]
SCALES: tuple[Scale, ...] = ("graded", "winner", "scores")

PAIRWISE_PROMPT = (
    "You compare two answers to the same user request. Which is better: more correct, "
    "complete and clear? The order in which they appear says nothing about them. "
    'Reply with JSON only: {{"winner": "A"}}, {{"winner": "B"}} or {{"winner": "tie"}}.'
    "\n\nUser request:\n{prompt}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)
GRADED_PROMPT = (
    "You compare two answers to the same user request. Which is better: more correct, "
    "complete and clear, and by how much? The order in which they appear says nothing "
    'about them. Reply with JSON only: {{"verdict": V}} where V is "A>>B" (A is much '
    'better), "A>B" (A is better), "A=B" (as good), "B>A" (B is better) or "B>>A" (B '
    "is much better).\n\nUser request:\n{prompt}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)
SCORES_PROMPT = (
    "You grade two answers to the same user request, side by side. Score each from 1 "
    "(wrong or unhelpful) to 5 (correct, complete and clear). The order in which they "
    'appear says nothing about them. Reply with JSON only: {{"A": <1-5>, "B": <1-5>}}.'
    "\n\nUser request:\n{prompt}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)
PROMPTS = {"graded": GRADED_PROMPT, "winner": PAIRWISE_PROMPT, "scores": SCORES_PROMPT}
_WINNER = re.compile(r'"winner"\s*:\s*"(A|B|tie)"', re.IGNORECASE)
_GRADE = re.compile(
    r'"verdict"\s*:\s*"\s*(A\s*>>\s*B|A\s*>\s*B|A\s*=\s*B|B\s*>\s*A|B\s*>>\s*A)\s*"', re.IGNORECASE
)
_SIDE_SCORE = {side: re.compile(rf'"{side}"\s*:\s*"?([1-5])(?![0-9.])') for side in "AB"}
# The first answer's score for each verdict.
GRADE_SCORE = {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}
WINNER_SCORE = {"A": 1.0, "tie": 0.5, "B": 0.0}


class Garbage(ValueError):
    """The judge answered something that is not a verdict."""


@dataclass(frozen=True)
class PairwiseSettings:
    """The judge (like a variant: provider, model, endpoint with its key by Secret
    reference), the share of a candidate's requests judged, the spend cap."""

    provider: str
    model: str
    endpoint: Endpoint | None = None
    rate: float = 0.1
    max_usd_per_hour: float = 1.0
    max_pending: int = 32
    timeout: float = 60.0
    orders: int = 2  # 2: both orders per pair; 1: one, drawn at random (half the judge calls)
    scale: Scale = "graded"  # five points; "winner": A, B or tie; "scores": 1-5 each

    @classmethod
    def from_options(cls, rate: float, options: dict[str, Any]) -> PairwiseSettings:
        if "model" not in options:
            raise ValueError("evaluator pairwise needs option 'model' (the judge model)")
        cap = float(options.get("maxUsdPerHour", 1.0))
        if not cap >= 0:
            raise ValueError(f"evaluator pairwise: maxUsdPerHour must be >= 0, got {cap}")
        orders = options.get("orders", 2)
        if orders not in (1, 2, "1", "2"):
            raise ValueError(f"evaluator pairwise: orders must be 1 or 2, got {orders!r}")
        scale = options.get("scale", "graded")
        if scale not in SCALES:
            raise ValueError(
                f"evaluator pairwise: scale must be graded, winner or scores, got {scale!r}"
            )
        return cls(
            provider=str(options.get("provider", "openai")),
            model=str(options["model"]),
            endpoint=Endpoint.model_validate(options["endpoint"])
            if "endpoint" in options
            else None,
            rate=rate,
            max_usd_per_hour=cap,
            max_pending=int(options.get("maxPending", 32)),
            timeout=float(options.get("timeout", 60.0)),
            orders=int(orders),
            scale=scale,
        )


def verdict_of(text: str) -> Verdict:
    """The judge's verdict in its reply (scale winner); Garbage when there is none."""
    found = _WINNER.search(text)
    if found is None:
        raise Garbage(f"no verdict in the judge's reply ({text[:80]!r})")
    word = found.group(1)
    return "tie" if word.lower() == "tie" else ("A" if word.upper() == "A" else "B")


def first_score(text: str, scale: Scale) -> float:
    """The first answer's (A's) score in the judge's reply, on [0, 1]; Garbage when the
    reply holds no verdict of that scale."""
    if scale == "winner":
        return WINNER_SCORE[verdict_of(text)]
    if scale == "scores":
        fa, fb = (_SIDE_SCORE[side].search(text) for side in "AB")
        if fa is None or fb is None:
            raise Garbage(f"no scores for A and B in the judge's reply ({text[:80]!r})")
        a, b = int(fa.group(1)), int(fb.group(1))
        return (4 + a - b) / 8  # 1 for 5 against 1, 1/2 for equal scores
    found = _GRADE.search(text)
    if found is None:
        raise Garbage(f"no graded verdict in the judge's reply ({text[:80]!r})")
    return GRADE_SCORE[re.sub(r"\s+", "", found.group(1)).upper()]


def pair_score(as_first: float | None, as_second: float | None) -> float:
    """The candidate's score for a pair: the mean over the orders judged of its own
    score, from ``as_first`` (A's score with the candidate as A) and ``as_second`` (A's
    score with stable as A)."""
    own = [s for s in (as_first, None if as_second is None else 1.0 - as_second)
           if s is not None]  # fmt: skip
    if not own:
        raise ValueError("a pair needs at least one order judged")
    return sum(own) / len(own)


def outcome_of(score: float) -> Outcome:
    """Win, loss or tie for the candidate, from its pair score."""
    return "win" if score > 0.5 else "loss" if score < 0.5 else "tie"


class SpendMeter:
    """USD spent in the current clock hour."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._hour = -1
        self.spent = 0.0

    def _roll(self) -> None:
        hour = int(self._clock() // 3600)
        if hour != self._hour:
            self._hour, self.spent = hour, 0.0

    def over(self, cap: float) -> bool:
        self._roll()
        return self.spent >= cap

    def add(self, usd: float) -> None:
        self._roll()
        self.spent += usd


class PairwiseJudge:
    """The sampling, the shadow call, the two judgements, the counting."""

    def __init__(
        self,
        settings: PairwiseSettings,
        metrics: GatewayMetrics,
        pricing: PricingCatalog,
        provider: Callable[[str], Provider],
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s, self.metrics, self.pricing, self.provider = settings, metrics, pricing, provider
        self._rng = random.Random(seed)
        self.spend = SpendMeter(clock)
        self._tasks: set[asyncio.Task[float | None]] = set()

    def offer(
        self, creq: ChatRequest, candidate: Variant, answer: ChatResult, stable: Variant | None,
        llm_config: str, client_params: Parameters | None = None,
    ) -> asyncio.Task[float | None] | None:  # fmt: skip
        """Maybe judge this answer of ``candidate`` against ``stable``'s, in the
        background; the task, or None when not sampled or skipped (counted).
        ``client_params``: what the client asked for, under stable's own parameters."""
        if stable is None or candidate.role != "candidate" or stable.id == candidate.id:
            return None
        if self.s.rate < 1.0 and self._rng.random() >= self.s.rate:
            return None
        if self.spend.over(self.s.max_usd_per_hour):
            self._skip(llm_config, "spend_cap")
            return None
        if len(self._tasks) >= self.s.max_pending:
            self._skip(llm_config, "busy")
            return None
        shadow = request_as(creq, stable, client_params, "-pairwise")
        task = asyncio.create_task(self.judge_pair(creq, shadow, candidate, answer, stable,
                                                   llm_config))  # fmt: skip
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> None:
        """Stop judging (shutdown): the pairs in flight are dropped."""
        for task in list(self._tasks):
            task.cancel()

    async def drain(self) -> None:
        """Wait for every pair being judged (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _skip(self, llm_config: str, reason: str) -> None:
        self.metrics.pairwise_skipped.labels(self.metrics.ns, llm_config, reason).inc()

    def _cost(self, llm_config: str, kind: str, model: str, result: ChatResult) -> None:
        usd = self.pricing.cost(model, result.input_tokens, result.output_tokens) or 0.0
        self.spend.add(usd)
        self.metrics.evaluation_cost.labels(self.metrics.ns, llm_config, "pairwise", kind).inc(
            usd
        )

    async def judge_pair(
        self, creq: ChatRequest, shadow_req: ChatRequest, candidate: Variant,
        answer: ChatResult, stable: Variant, llm_config: str,
    ) -> float | None:  # fmt: skip
        """Stable's answer to the same request (``shadow_req``), then the judgements;
        the candidate's pair score (counted), or None when the pair could not be judged
        (counted as skipped)."""
        try:
            async with asyncio.timeout(self.s.timeout):
                theirs = await self.provider(stable.provider).complete(shadow_req)
        except (TimeoutError, ProviderError, OSError) as exc:
            log.debug("pairwise shadow call failed: %s", exc)
            self._skip(llm_config, "shadow_error")
            return None
        self._cost(llm_config, "shadow", stable.model, theirs)
        self.metrics.stable_similarity.labels(
            self.metrics.ns, llm_config, candidate.id, stable.id
        ).observe(similarity(answer.text, theirs.text))
        prompt = prompt_text(creq.messages)
        rid = creq.request_id
        # orders 1: one order drawn at random, so that a judge's preference for a
        # position favours each side equally often (noise, not bias).
        ab = self.s.orders == 2 or self._rng.random() < 0.5
        ba = self.s.orders == 2 or not ab
        try:
            as_first = (
                await self._ask(rid + "-ab", prompt, answer.text, theirs.text, llm_config)
                if ab
                else None
            )
            as_second = (
                await self._ask(rid + "-ba", prompt, theirs.text, answer.text, llm_config)
                if ba
                else None
            )
        except Garbage as exc:
            log.debug("pairwise judge: %s", exc)
            self._skip(llm_config, "judge_garbage")
            return None
        except (TimeoutError, ProviderError, OSError) as exc:
            log.debug("pairwise judge failed: %s", exc)
            self._skip(llm_config, "judge_error")
            return None
        score = pair_score(as_first, as_second)
        labels = (self.metrics.ns, llm_config, candidate.id, stable.id)
        self.metrics.pairwise.labels(*labels, outcome_of(score)).inc()
        self.metrics.pairwise_score.labels(*labels).observe(score)
        return score

    async def _ask(self, rid: str, prompt: str, a: str, b: str, llm_config: str) -> float:
        """One judgement of (A, B): A's score."""
        template = PROMPTS[self.s.scale]
        request = ChatRequest(
            model=self.s.model,
            messages=[
                {
                    "role": "user",
                    "content": template.format(prompt=prompt[:4000], a=a[:6000], b=b[:6000]),
                }
            ],
            parameters=Parameters(temperature="0", max_tokens=20),
            request_id=rid,
            endpoint=self.s.endpoint,
        )
        async with asyncio.timeout(self.s.timeout):
            reply = await self.provider(self.s.provider).complete(request)
        self._cost(llm_config, "judge", self.s.model, reply)
        score = first_score(reply.text, self.s.scale)
        self.metrics.pairwise_first.labels(self.metrics.ns, llm_config).observe(score)
        return score
