"""Pairwise judging against stable: for a sampled share of the requests a candidate
answers, stable's answer to the same request is obtained off the user's path and a
judge model is asked, blind, which of the two is better — in both orders, so a judge's
preference for the first (or second) answer cancels — ties allowed.

The user gets the candidate's answer as always: the pair is judged in the background
after the response went out, bounded in concurrency, and within a spend cap (USD per
hour, shadow and judge calls together). The shadow answer is not counted as a request
of stable, and what evaluation costs goes to ``llmopt_evaluation_cost_usd_total``,
never into a variant's cost per request. A judge that errors, times out or answers
something that is not a verdict is counted and skipped: never a verdict.

Each shadowed pair also gets a cheap reference-free number, the lexical similarity of
the two answers (``gateway.similarity``), exported as ``llmopt_stable_similarity``.

A pair's outcome for the candidate: win when one order prefers it and the other does
not prefer stable (win+win, win+tie), loss the other way round, a tie otherwise
(including the two orders disagreeing, which is what position bias looks like).
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

PAIRWISE_PROMPT = (
    "You compare two answers to the same user request. Which is better: more correct, "
    "complete and clear? The order in which they appear says nothing about them. "
    'Reply with JSON only: {{"winner": "A"}}, {{"winner": "B"}} or {{"winner": "tie"}}.'
    "\n\nUser request:\n{prompt}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
)
_WINNER = re.compile(r'"winner"\s*:\s*"(A|B|tie)"', re.IGNORECASE)


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
        )


def verdict_of(text: str) -> Verdict:
    """The judge's verdict in its reply; Garbage when there is none."""
    found = _WINNER.search(text)
    if found is None:
        raise Garbage(f"no verdict in the judge's reply ({text[:80]!r})")
    word = found.group(1)
    return "tie" if word.lower() == "tie" else ("A" if word.upper() == "A" else "B")


def combine(first: Verdict, second: Verdict) -> Outcome:
    """The candidate's outcome from the two orders: ``first`` with the candidate as A,
    ``second`` with the candidate as B."""
    says = {"A": "win", "B": "loss", "tie": "tie"}[first], {
        "A": "loss",
        "B": "win",
        "tie": "tie",
    }[second]
    if "win" in says and "loss" not in says:
        return "win"
    if "loss" in says and "win" not in says:
        return "loss"
    return "tie"


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
        self._tasks: set[asyncio.Task[Outcome | None]] = set()

    def offer(
        self, creq: ChatRequest, candidate: Variant, answer: ChatResult, stable: Variant | None,
        llm_config: str, client_params: Parameters | None = None,
    ) -> asyncio.Task[Outcome | None] | None:  # fmt: skip
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
    ) -> Outcome | None:  # fmt: skip
        """Stable's answer to the same request (``shadow_req``), then the two
        judgements; the outcome (counted), or None when the pair could not be judged
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
        try:
            if self.s.orders == 1:
                outcome = await self._once(creq.request_id, prompt, answer, theirs, llm_config)
            else:
                first = await self._ask(creq.request_id + "-ab", prompt, answer.text,
                                        theirs.text, llm_config)  # fmt: skip
                second = await self._ask(creq.request_id + "-ba", prompt, theirs.text,
                                         answer.text, llm_config)  # fmt: skip
                outcome = combine(first, second)
        except Garbage as exc:
            log.debug("pairwise judge: %s", exc)
            self._skip(llm_config, "judge_garbage")
            return None
        except (TimeoutError, ProviderError, OSError) as exc:
            log.debug("pairwise judge failed: %s", exc)
            self._skip(llm_config, "judge_error")
            return None
        self.metrics.pairwise.labels(
            self.metrics.ns, llm_config, candidate.id, stable.id, outcome
        ).inc()
        return outcome

    async def _once(
        self, rid: str, prompt: str, answer: ChatResult, theirs: ChatResult, llm_config: str
    ) -> Outcome:
        """One judgement in an order drawn at random: a judge's preference for a
        position adds noise to the win rate but no bias (it favours each side equally
        often)."""
        if self._rng.random() < 0.5:
            verdict = await self._ask(rid + "-ab", prompt, answer.text, theirs.text, llm_config)
            return {"A": "win", "B": "loss", "tie": "tie"}[verdict]  # type: ignore[return-value]
        verdict = await self._ask(rid + "-ba", prompt, theirs.text, answer.text, llm_config)
        return {"A": "loss", "B": "win", "tie": "tie"}[verdict]  # type: ignore[return-value]

    async def _ask(self, rid: str, prompt: str, a: str, b: str, llm_config: str) -> Verdict:
        request = ChatRequest(
            model=self.s.model,
            messages=[
                {
                    "role": "user",
                    "content": PAIRWISE_PROMPT.format(
                        prompt=prompt[:4000], a=a[:6000], b=b[:6000]
                    ),
                }
            ],
            parameters=Parameters(temperature="0", max_tokens=20),
            request_id=rid,
            endpoint=self.s.endpoint,
        )
        async with asyncio.timeout(self.s.timeout):
            reply = await self.provider(self.s.provider).complete(request)
        self._cost(llm_config, "judge", self.s.model, reply)
        return verdict_of(reply.text)
