"""Upstream LLM providers behind one protocol, registered by name."""

from .anthropic import AnthropicProvider
from .base import ChatChunk, ChatRequest, ChatResult, Provider, ProviderError, create, register
from .openai import OpenAIProvider
from .replay import ReplayProvider
from .simulator import SimulatorProvider

register("openai", OpenAIProvider)
register("anthropic", AnthropicProvider)
register("simulator", SimulatorProvider)
register("replay", ReplayProvider)

__all__ = [
    "AnthropicProvider",
    "ChatChunk",
    "ChatRequest",
    "ChatResult",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ReplayProvider",
    "SimulatorProvider",
    "create",
    "register",
]
