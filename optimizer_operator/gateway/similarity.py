"""How close a candidate's answer is to stable's answer to the same request: a cheap,
reference-free signal computed on the pairs pairwise judging already shadows.

A lexical method, not an embedding: the cosine of two bags of features — lower-cased
words, word pairs and character 4-grams (which survive inflection and small rewordings)
— each weighted by the square root of its count so one repeated phrase does not decide.
It needs no model and no download, runs in microseconds for typical answers, and holds
nothing between calls. It says *different from stable*, not *worse*: two correct
answers in different words score low, so it is a drift alarm beside a judge's verdict,
not a substitute for one (``make bench-judging`` measures what it predicts on GSM8K).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

_WORD = re.compile(r"\w+")
MAX_CHARS = 8000  # longer answers are compared on their first MAX_CHARS characters


def features(text: str) -> Counter[str]:
    """The bag of features of one answer."""
    text = text[:MAX_CHARS].lower()
    words = _WORD.findall(text)
    bag: Counter[str] = Counter(words)
    bag.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    squeezed = " ".join(words)
    bag.update(f"#{squeezed[i : i + 4]}" for i in range(max(len(squeezed) - 3, 0)))
    return bag


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two answers' feature bags, in [0, 1]; 1 for two empty answers
    (nothing differs), 0 when only one is empty."""
    fa, fb = features(a), features(b)
    if not fa or not fb:
        return 1.0 if not fa and not fb else 0.0
    if len(fa) > len(fb):
        fa, fb = fb, fa
    dot = sum(math.sqrt(n * fb[k]) for k, n in fa.items() if k in fb)
    norm = math.sqrt(sum(fa.values())) * math.sqrt(sum(fb.values()))
    return min(dot / norm, 1.0)
