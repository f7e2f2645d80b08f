"""Request bodies as the gateway accepts them: JSON objects of bounded nesting.

A body nested thousands of levels deep makes ``json.loads`` (and everything that walks
the result afterwards: validation, forwarding upstream, tracing) recurse until Python's
limit; it is refused up front with a 400 naming the limit, never a 500. No chat request
nests anywhere near this deep (messages, content parts, tool schemas: about ten levels).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class BadJson(ValueError):
    """The body is not JSON the gateway takes; the message says why, for the client."""


def _nesting_ok(raw: bytes, limit: int) -> bool:
    """Whether no array or object in ``raw`` nests deeper than ``limit``: one pass over the
    bytes, brackets inside strings skipped (a cheap pre-check before any parse)."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return True


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The body as a JSON object; BadJson when it is not valid JSON, not an object, or
    nests deeper than ``max_depth``."""
    opened = raw.count(b"[") + raw.count(b"{")  # at C speed: most bodies stop here
    if opened > max_depth and not _nesting_ok(raw, max_depth):
        raise BadJson(f"body nests deeper than {max_depth} levels")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJson(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # pragma: no cover - the pre-check refuses such bodies first
        raise BadJson(f"body nests deeper than {max_depth} levels") from None
    if not isinstance(body, dict):
        raise BadJson("body must be a JSON object")
    return body
