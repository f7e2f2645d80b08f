"""Upstream LLM providers behind one protocol, registered by name."""

from .anthropic import AnthropicProvider
from .base import ChatChunk, ChatRequest, ChatResult, Provider, ProviderError, create, register
from .openai import GoogleProvider, OpenAIProvider
from .replay import ReplayProvider
from .simulator import SimulatorProvider

register("openai", OpenAIProvider)
register("anthropic", AnthropicProvider)
register("google", GoogleProvider)
register("simulator", SimulatorProvider)
register("replay", ReplayProvider)

__all__ = [
    "AnthropicProvider",
    "ChatChunk",
    "ChatRequest",
    "ChatResult",
    "GoogleProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ReplayProvider",
    "SimulatorProvider",
    "create",
    "register",
]
