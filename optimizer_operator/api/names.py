"""Names the operator derives from the names people give: object names (DNS subdomains,
253 characters) and label values (63). A derived name that would be too long keeps its
start and ends in a hash of the whole, so it stays unique, readable and the same on
every pass (a restart derives the same name, never a second object)."""

from __future__ import annotations

import hashlib

OBJECT_NAME_LIMIT = 253
LABEL_VALUE_LIMIT = 63
_HASH = 8


def bounded(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its start, ``-`` and a hash of
    all of it; never ends in ``-`` or ``.``."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH]
    head = text[: limit - _HASH - 1].rstrip("-.")
    return f"{head}-{digest}"


def object_name(text: str) -> str:
    """A name for a derived object (Rollout, ConfigMap, Deployment)."""
    return bounded(text, OBJECT_NAME_LIMIT)


def label_value(text: str) -> str:
    """A label value naming an object (label values hold at most 63 characters)."""
    return bounded(text, LABEL_VALUE_LIMIT)
