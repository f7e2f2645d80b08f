"""Optional per-client rate limiting: a token bucket per client key."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimiter:
    """``rate`` requests/second with bursts up to ``burst``, per client key."""

    def __init__(self, rate: float, burst: int | None = None, max_clients: int = 100_000) -> None:
        if rate <= 0:
            raise ValueError("rate limit must be > 0 requests/second")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, client: str, now: float | None = None) -> float:
        """0 if the request may go, else the seconds until it may (for Retry-After)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)  # forget the least recently seen client
        return wait


def parse_rate_limit(text: str) -> RateLimiter:
    """``"50"`` or ``"50:100"`` (rate per second : burst)."""
    rate, _, burst = text.partition(":")
    return RateLimiter(float(rate), int(burst) if burst else None)
