"""Opt-in traffic recording to JSONL in the replay provider's format.

Each line is ``{"prompt", "model", "response", "correct", "llm_config", "namespace",
"variant", "ts"}``, so recorded traffic can be replayed as an offline evaluation set.
Redaction: ``none`` keeps the prompt, ``pii`` masks e-mail addresses, phone
and card-like numbers, ``hash`` stores only a SHA-256 of the prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from pathlib import Path
from typing import IO

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_LONG_NUMBER = re.compile(r"\+?\d[\d ()-]{7,}\d")
REDACTIONS = ("none", "pii", "hash")


def redact(text: str, mode: str) -> str:
    if mode == "none":
        return text
    if mode == "hash":
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    if mode == "pii":
        return _LONG_NUMBER.sub("<number>", _EMAIL.sub("<email>", text))
    raise ValueError(f"unknown redaction {mode!r}; use one of {', '.join(REDACTIONS)}")


class Recorder:
    """Appends records; flushed by a background task so requests never wait on disk."""

    def __init__(self, path: Path, redaction: str = "pii", flush_interval: float = 1.0) -> None:
        if redaction not in REDACTIONS:
            raise ValueError(f"unknown redaction {redaction!r}; use one of {', '.join(REDACTIONS)}")
        self.path = path
        self.redaction = redaction
        self.flush_interval = flush_interval
        self._file: IO[str] = path.open("a", buffering=1 << 16)
        self._task: asyncio.Task[None] | None = None

    def record(
        self,
        *,
        prompt: str,
        model: str,
        response: str,
        correct: bool | None,
        llm_config: str,
        variant: str,
        namespace: str = "",
    ) -> None:
        self._file.write(
            json.dumps(
                {
                    "prompt": redact(prompt, self.redaction),
                    "model": model,
                    "response": response,
                    "correct": correct,
                    "llm_config": llm_config,
                    "namespace": namespace,
                    "variant": variant,
                    "ts": round(time.time(), 3),
                }
            )
            + "\n"
        )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self._file.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop())

    async def stop(self) -> None:
        """Flush and close; a second call does nothing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if not self._file.closed:
            self._file.flush()
            self._file.close()
