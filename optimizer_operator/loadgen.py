"""``llm-optimizer loadgen``: drive an OpenAI-compatible endpoint and summarize.

Open loop at a target rate (arrivals do not wait for answers, as real users
do not) or closed loop at a concurrency. Prompts come from the replay dataset
or a built-in set. The summary has achieved rate, latency percentiles,
errors, and per variant (from the gateway's ``X-LLMOpt-Variant`` header) the
request count, latency, and cost and mean quality from the gateway's
``/metrics`` before and after the run.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

BUILTIN_PROMPTS = [
    "What is 17 times 23?",
    "Summarize the plot of Hamlet in two sentences.",
    "Write a haiku about Kubernetes.",
    "Explain the difference between TCP and UDP.",
    "A train travels 120 km in 1.5 hours. What is its average speed?",
    "Give three tips for writing clear commit messages.",
    "Translate 'good morning' into French, Spanish and German.",
    "What is the capital of Australia?",
]


def load_prompts(source: str, limit: int | None = None) -> list[str]:
    """``builtin``, ``replay`` (the replay dataset's prompts) or a text file, one a line."""
    if source == "builtin":
        prompts = list(BUILTIN_PROMPTS)
    elif source == "replay":
        from .providers.replay import load_dataset

        prompts = load_dataset().prompts()
    else:
        with open(source) as fh:
            prompts = [line.strip() for line in fh if line.strip()]
    if not prompts:
        raise ValueError(f"no prompts in {source}")
    return prompts[:limit] if limit else prompts


@dataclass
class Outcome:
    status: int
    latency: float
    variant: str
    error_type: str = ""


@dataclass
class Summary:
    duration: float
    outcomes: list[Outcome]
    metrics_delta: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        ok = [o.latency for o in self.outcomes if o.status == 200]
        lat = np.array(ok) * 1000 if ok else np.array([np.nan])
        statuses = Counter(o.status for o in self.outcomes)
        variants: dict[str, list[Outcome]] = defaultdict(list)
        for o in self.outcomes:
            variants[o.variant].append(o)
        per_variant = {}
        for name, outs in sorted(variants.items()):
            good = [o.latency * 1000 for o in outs if o.status == 200]
            delta = self.metrics_delta.get(name, {})
            cost = delta.get("cost")
            per_variant[name] = {
                "requests": len(outs),
                "errors": sum(o.status != 200 for o in outs),
                "latency_p50_ms": float(np.percentile(good, 50)) if good else None,
                "latency_p95_ms": float(np.percentile(good, 95)) if good else None,
                "cost_usd": delta.get("cost"),
                "cost_per_request_usd": (cost / len(good) if cost is not None and good else None),
                "mean_quality": delta.get("quality"),
            }
        total = len(self.outcomes)
        return {
            "requests": total,
            "duration_s": round(self.duration, 3),
            "achieved_rps": round(total / self.duration, 2) if self.duration else 0.0,
            "ok": statuses.get(200, 0),
            "errors": total - statuses.get(200, 0),
            "error_rate": round((total - statuses.get(200, 0)) / total, 4) if total else 0.0,
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms": {
                "p50": float(np.nanpercentile(lat, 50)),
                "p90": float(np.nanpercentile(lat, 90)),
                "p99": float(np.nanpercentile(lat, 99)),
                "max": float(np.nanmax(lat)),
            },
            "variants": per_variant,
        }


def _metric_totals(text: str) -> dict[str, dict[str, float]]:
    """Per-variant cost and quality sums/counts from the gateway's exposition text."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            variant = s.labels.get("variant")
            if variant is None:
                continue
            if s.name == "llmopt_cost_usd_total":
                out[variant]["cost"] += s.value
            elif s.name == "llmopt_quality_score_sum" and s.labels.get("evaluator") in (
                "ground_truth",
                "llm_judge",
            ):
                out[variant]["q_sum"] += s.value
            elif s.name == "llmopt_quality_score_count" and s.labels.get("evaluator") in (
                "ground_truth",
                "llm_judge",
            ):
                out[variant]["q_count"] += s.value
    return out


async def _scrape(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, float]] | None:
    try:
        async with session.get(
            url.rstrip("/") + "/metrics", timeout=aiohttp.ClientTimeout(total=5)
        ) as resp:
            if resp.status != 200:
                return None
            return _metric_totals(await resp.text())
    except (TimeoutError, aiohttp.ClientError):
        return None


class LoadGenerator:
    """Sends chat requests; one instance per run."""

    def __init__(
        self,
        url: str,
        prompts: list[str],
        *,
        model: str = "default",
        stream: bool = False,
        timeout: float = 120.0,
        users: int = 0,
        sticky_header: str = "x-llmopt-sticky-key",
        seed: int | None = None,
        max_in_flight: int = 4096,
        progress: bool = False,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.prompts = prompts
        self.model = model
        self.stream = stream
        self.timeout = timeout
        self.users = users
        self.sticky_header = sticky_header
        self.rng = random.Random(seed)
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.extra_body = extra_body or {}
        self.outcomes: list[Outcome] = []
        self._in_flight = 0

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        prompt = self.prompts[i % len(self.prompts)]
        headers = {"X-Request-Id": uuid.UUID(int=self.rng.getrandbits(128)).hex}
        if self.users:
            headers[self.sticky_header] = f"user-{self.rng.randrange(self.users)}"
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            **self.extra_body,
        }
        if self.stream:
            body["stream"] = True
        started = time.perf_counter()
        self._in_flight += 1
        try:
            async with session.post(
                self.url + "/v1/chat/completions", json=body, headers=headers
            ) as resp:
                if self.stream and resp.status == 200:
                    async for _ in resp.content:
                        pass
                else:
                    payload = await resp.read()
                status, variant = resp.status, resp.headers.get("X-LLMOpt-Variant", "-")
                error_type = ""
                if status != 200 and not self.stream:
                    try:
                        error_type = json.loads(payload)["error"]["type"]
                    except (ValueError, KeyError, TypeError):
                        error_type = "unparseable"
        except TimeoutError:
            status, variant, error_type = 0, "-", "client_timeout"
        except aiohttp.ClientError as exc:
            status, variant, error_type = 0, "-", type(exc).__name__
        finally:
            self._in_flight -= 1
        self.outcomes.append(Outcome(status, time.perf_counter() - started, variant, error_type))

    def _show(self, done: int, total: int | None, started: float) -> None:
        if not self.progress:
            return
        elapsed = time.perf_counter() - started
        errors = sum(o.status != 200 for o in self.outcomes)
        if total:
            width = 30
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(
                f"\r[{bar}] {done}/{total} {done / max(elapsed, 1e-9):6.1f} rps errors {errors}"
            )
        else:
            sys.stderr.write(
                f"\r{done} requests {done / max(elapsed, 1e-9):6.1f} rps errors {errors}"
            )
        sys.stderr.flush()

    async def run(
        self,
        *,
        rate: float | None = None,
        concurrency: int | None = None,
        requests: int | None = None,
        duration: float | None = None,
        arrivals: str = "poisson",
    ) -> Summary:
        if (rate is None) == (concurrency is None):
            raise ValueError("give exactly one of rate or concurrency")
        if requests is None and duration is None:
            raise ValueError("give requests or duration")
        connector = aiohttp.TCPConnector(limit=0 if rate else (concurrency or 0))
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            before = await _scrape(session, self.url)
            started = time.perf_counter()
            deadline = started + duration if duration else None
            if rate is not None:
                await self._open_loop(session, rate, requests, deadline, arrivals, started)
            else:
                assert concurrency is not None
                await self._closed_loop(session, concurrency, requests, deadline, started)
            elapsed = time.perf_counter() - started
            after = await _scrape(session, self.url)
        if self.progress:
            sys.stderr.write("\n")
        delta: dict[str, dict[str, float | None]] = {}
        if before is not None and after is not None:
            for variant, totals in after.items():
                b = before.get(variant, {})
                q_count = totals.get("q_count", 0.0) - b.get("q_count", 0.0)
                delta[variant] = {
                    "cost": totals.get("cost", 0.0) - b.get("cost", 0.0),
                    "quality": (
                        (totals.get("q_sum", 0.0) - b.get("q_sum", 0.0)) / q_count
                        if q_count
                        else None
                    ),
                }
        return Summary(elapsed, self.outcomes, delta)

    async def _open_loop(
        self,
        session: aiohttp.ClientSession,
        rate: float,
        requests: int | None,
        deadline: float | None,
        arrivals: str,
        started: float,
    ) -> None:
        tasks: set[asyncio.Task[None]] = set()
        next_at = started
        i = 0
        last_show = 0.0
        while (requests is None or i < requests) and (deadline is None or next_at < deadline):
            now = time.perf_counter()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            if self._in_flight >= self.max_in_flight:
                self.outcomes.append(Outcome(0, 0.0, "-", "loadgen_saturated"))
            else:
                task = asyncio.create_task(self._one(session, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
            gap = self.rng.expovariate(rate) if arrivals == "poisson" else 1.0 / rate
            next_at += gap
            if now - last_show > 0.2:
                self._show(len(self.outcomes), requests, started)
                last_show = now
        if tasks:
            await asyncio.gather(*tasks)
        self._show(len(self.outcomes), requests, started)

    async def _closed_loop(
        self,
        session: aiohttp.ClientSession,
        concurrency: int,
        requests: int | None,
        deadline: float | None,
        started: float,
    ) -> None:
        counter = iter(range(requests if requests is not None else 1 << 62))

        async def worker() -> None:
            for i in counter:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                await self._one(session, i)
                if i % 50 == 0:
                    self._show(len(self.outcomes), requests, started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        self._show(len(self.outcomes), requests, started)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"requests {summary['requests']} in {summary['duration_s']}s "
        f"({summary['achieved_rps']} rps), errors {summary['errors']} "
        f"({summary['error_rate'] * 100:.2f}%) {summary['status_counts']}",
        "latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max:.1f}".format(
            **summary["latency_ms"]
        ),
        f"{'variant':<16}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'cost/req $':>12}{'quality':>9}",
    ]
    for name, v in summary["variants"].items():

        def fmt(x: Any, spec: str) -> str:
            return format(x, spec) if isinstance(x, int | float) else "-"

        lines.append(
            f"{name:<16}{v['requests']:>9}{v['errors']:>8}{fmt(v['latency_p50_ms'], '9.1f')}"
            f"{fmt(v['latency_p95_ms'], '9.1f')}{fmt(v['cost_per_request_usd'], '12.6f')}"
            f"{fmt(v['mean_quality'], '9.3f')}"
        )
    return "\n".join(lines)
