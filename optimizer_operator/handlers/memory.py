"""Giving freed memory back to the system. CPython frees objects into glibc's heap,
which keeps the pages: after the start-up storm (every object handled at once) and in a
long steady state, the process's RSS stays at its high-water mark though most of it is
free. ``malloc_trim(0)`` every ``LLMOPT_MALLOC_TRIM_SECONDS`` (default 30; 0: never)
returns the free pages; where the C library has no ``malloc_trim`` (not glibc) nothing
is done."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

from .environment import trim_seconds

log = logging.getLogger("llmopt.memory")


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def start_trimming() -> threading.Thread | None:
    """A daemon thread trimming the heap periodically; None when off or unsupported."""
    every = trim_seconds()
    trim = _malloc_trim()
    if every <= 0 or trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]

    def run() -> None:
        while True:
            time.sleep(every)
            trim(0)

    thread = threading.Thread(target=run, name="malloc-trim", daemon=True)
    thread.start()
    log.debug("trimming the heap every %g s", every)
    return thread
