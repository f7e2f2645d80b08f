"""Request text as a sparse vector: signed feature hashing of word uni- and bigrams.

Hashing needs no vocabulary, so the artifact carries only weights, and a request is
scored in microseconds. Each field (the prompt; for a cascade also the cheap model's
answer) hashes in its own namespace, with a few shape tokens (its length and count of
numbers, bucketed by powers of two). CRC-32 is stable across processes and versions.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy only where a matrix is built (training): not in the gateway
    from scipy import sparse

DIMS = 1 << 18
_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?|[^\sa-z\d]")


def _bucket(n: int) -> int:
    return 0 if n <= 0 else int(math.log2(n)) + 1


def grams(field: str, text: str) -> list[str]:
    """The hashed features of one field: tokens (numbers folded to <num>), bigrams,
    and shape tokens."""
    raw = _TOKEN.findall(text.lower())
    tokens = ["<num>" if t[0].isdigit() else t for t in raw]
    numbers = sum(1 for t in raw if t[0].isdigit())
    out = [f"{field}:{t}" for t in tokens]
    out += [f"{field}:{a} {b}" for a, b in itertools.pairwise(tokens)]
    out += [f"{field}#len{_bucket(len(text))}", f"{field}#nums{_bucket(numbers)}"]
    return out


def vector(fields: Sequence[tuple[str, str]]) -> dict[int, float]:
    """Index -> value of the L2-normalized signed hashed features."""
    acc: dict[int, float] = {}
    for name, text in fields:
        for g in grams(name, text):
            h = zlib.crc32(g.encode())
            i = h % DIMS
            acc[i] = acc.get(i, 0.0) + (1.0 if h & 0x80000000 else -1.0)
    norm = math.sqrt(sum(v * v for v in acc.values())) or 1.0
    return {i: v / norm for i, v in acc.items() if v}


def matrix(rows: Sequence[Sequence[tuple[str, str]]]) -> sparse.csr_matrix:
    """Rows of fields as a CSR matrix (one row per request)."""
    from scipy import sparse

    data: list[float] = []
    indices: list[int] = []
    indptr = [0]
    for fields in rows:
        for i, v in sorted(vector(fields).items()):
            indices.append(i)
            data.append(v)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
        shape=(len(rows), DIMS),
    )
