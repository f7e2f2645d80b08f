"""Shared HTTP plumbing for upstream providers: session, keys, error mapping."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from ..api.llmconfig import Endpoint
from .base import ProviderError

SECRETS_DIR = Path(os.environ.get("LLMOPT_SECRETS_DIR", "/var/run/secrets/llmopt"))


def api_key(endpoint: Endpoint | None, env_var: str) -> str | None:
    """The API key: the mounted Secret file the variant references, else ``env_var``.

    Secrets are mounted at $LLMOPT_SECRETS_DIR/<secret name>/<key>; the CR only
    ever holds the reference.
    """
    ref = endpoint.api_key_secret_ref if endpoint else None
    if ref is not None:
        path = SECRETS_DIR / ref.name / ref.key
        try:
            return path.read_text().strip()
        except OSError:
            pass  # fall back to the environment, e.g. in local runs
    return os.environ.get(env_var) or None


def base_url(endpoint: Endpoint | None, default: str | None, provider: str) -> str:
    url = (endpoint.base_url if endpoint else None) or default
    if not url:
        raise ProviderError(
            500, "configuration_error", f"{provider}: the variant has no endpoint.baseUrl"
        )
    return url.rstrip("/")


async def upstream_error(resp: aiohttp.ClientResponse, provider: str) -> ProviderError:
    """Map an upstream HTTP error to the status the client should see."""
    try:
        detail = (await resp.text())[:300]
    except (TimeoutError, aiohttp.ClientError):
        detail = ""
    retry_after = None
    if "Retry-After" in resp.headers:
        try:
            retry_after = float(resp.headers["Retry-After"])
        except ValueError:
            retry_after = None
    if resp.status == 429:
        return ProviderError(
            429,
            "rate_limited",
            f"{provider} rate limit: {detail}",
            retryable=True,
            retry_after=retry_after,
        )
    if resp.status >= 500:
        return ProviderError(
            502, "upstream_error", f"{provider} answered {resp.status}: {detail}", retryable=True
        )
    if resp.status in (401, 403):
        return ProviderError(
            502, "upstream_auth", f"{provider} refused the gateway's credentials ({resp.status})"
        )
    return ProviderError(
        resp.status, "invalid_request_error", f"{provider} answered {resp.status}: {detail}"
    )


def connection_error(exc: BaseException, provider: str) -> ProviderError:
    if isinstance(exc, asyncio.TimeoutError):
        return ProviderError(
            504, "upstream_timeout", f"{provider} did not answer in time", retryable=True
        )
    return ProviderError(
        502, "upstream_unreachable", f"{provider} unreachable: {exc}", retryable=True
    )


class SessionHolder:
    """One pooled aiohttp session per provider instance, created lazily in the loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None),  # the gateway sets per-call deadlines
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-events body's ``data:`` lines, until ``[DONE]``."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        event = json.loads(data)
        if isinstance(event, dict):
            yield event


@contextmanager
def stream_errors(provider: str) -> Iterator[None]:
    """Map transport and parse failures while streaming to ProviderErrors."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise connection_error(exc, provider) from None
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ProviderError(502, "upstream_malformed", f"{provider} stream: {exc!r}") from None
