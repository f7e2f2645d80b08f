"""Token counts without a tokenizer: a documented approximation.

No tokenizer model can be downloaded on these machines, so we count tokens as
OpenAI's rule of thumb for English does: one token per four characters,
rounded up, at least one for non-empty text, plus four tokens of framing per
chat message. It is used only where the upstream does not report usage
(simulator, replay); real providers' own counts are used when present.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def count_text(text: str) -> int:
    """Approximate tokens in ``text``."""
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def count_messages(messages: list[dict[str, Any]]) -> int:
    """Approximate prompt tokens of chat ``messages``."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += TOKENS_PER_MESSAGE + count_text(str(content or ""))
    return total


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The prefix of ``text`` that fits in ``max_tokens`` approximate tokens."""
    return text[: max_tokens * CHARS_PER_TOKEN]


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The last user message's text: the key replay and the simulator use."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""
