"""Inbound bearer-key auth for the gateway run as its own Deployment.

Keys come from a file (a Secret's key mounted as a volume), one per line; blank lines
and ``#`` comments are skipped. The file is read again when it changes, so a rotated
Secret takes effect without a restart. A request to ``/v1/…`` must carry
``Authorization: Bearer <key>`` (what OpenAI's SDKs send as the API key); keys are
compared in constant time and never logged. Health, readiness and metrics stay open.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class KeyFile:
    """The accepted keys, from ``path``, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: tuple[bytes, ...] = ()
        self._load()  # a missing or empty file at start is an error the user sees
        if not self._keys:
            raise ValueError(f"{path}: no keys (one per line)")

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime == self._mtime:
            return
        lines = self.path.read_text().splitlines()
        self._keys = tuple(
            k.strip().encode() for k in lines if k.strip() and not k.strip().startswith("#")
        )
        self._mtime = mtime

    def allows(self, authorization: str | None) -> bool:
        """Whether the Authorization header carries one of the keys."""
        try:
            self._load()
        except OSError as exc:  # the Secret is being swapped: keep the keys read last
            log.warning("gateway auth: cannot read the key file: %s", exc.strerror)
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        candidate = given.strip().encode()
        # Every key compared, whatever matches: the time says nothing about which.
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(candidate, key)
        return found
