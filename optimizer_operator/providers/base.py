"""The provider protocol: one small interface, implementations registered by name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..api.llmconfig import Endpoint, Parameters


@dataclass(frozen=True)
class ChatRequest:
    """What the gateway asks a provider for, after applying the variant."""

    model: str
    messages: list[dict[str, Any]]
    parameters: Parameters
    request_id: str
    endpoint: Endpoint | None = None
    # Fields of the client's request the gateway does not interpret (tools, user, …).
    passthrough: dict[str, Any] = field(default_factory=dict)
    # Headers to forward upstream (W3C trace context).
    headers: dict[str, str] = field(default_factory=dict)
    # 1 for the first try; retries are new, independent calls upstream.
    attempt: int = 1


@dataclass
class ChatResult:
    """A provider's complete answer."""

    text: str
    finish_reason: str  # "stop" | "length" | …
    input_tokens: int
    output_tokens: int
    model: str
    # Ground-truth quality in [0, 1] when the provider knows it (replay labels,
    # the simulator's quality model); evaluators export it as "ground_truth".
    ground_truth: float | None = None
    # Seconds from sending the request to the first token, when measured.
    time_to_first_token: float | None = None
    # Function calls the model asked for, in OpenAI's shape: [{"id", "type":
    # "function", "function": {"name", "arguments" (a JSON string)}}].
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class ChatChunk:
    """One piece of a streamed answer; the last one carries ``result``. ``tool_calls``:
    OpenAI's streamed tool-call deltas ({"index", "id"?, "type"?, "function": {"name"?,
    "arguments"}}), relayed as they come."""

    delta: str
    result: ChatResult | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ProviderError(Exception):
    """An upstream failure with the HTTP status the client should see."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    """Answers chat requests. ``stream`` yields chunks, the last with the result."""

    name: str

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def close(self) -> None: ...


ProviderFactory = Callable[[], Provider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register(name: str, factory: ProviderFactory) -> None:
    """Make a provider available by name (as variants name it)."""
    _REGISTRY[name] = factory


def registered() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str) -> Provider:
    """A new provider instance by name; KeyError names the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(registered())}") from None
    return factory()
