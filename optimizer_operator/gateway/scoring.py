"""Pure scoring functions on a 0-1 scale: heuristics and reference-based metrics."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_GSM8K_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
REFUSAL_PATTERNS = (
    r"\bI(?:'m| am) (?:sorry|unable|not able)\b",
    r"\bI can(?:'t|not) (?:help|assist|provide|comply)\b",
    r"\bas an AI\b",
    r"\bI won't\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


def length_score(text: str, min_chars: int = 1, max_chars: int = 4000) -> float:
    """1 inside [min_chars, max_chars]; falls off linearly outside, to 0 at 0 or 2x max."""
    n = len(text)
    if n < min_chars:
        return n / min_chars if min_chars else 0.0
    if n > max_chars:
        return max(0.0, 1.0 - (n - max_chars) / max_chars)
    return 1.0


def json_score(text: str, schema: dict[str, Any] | None = None) -> float:
    """1 when ``text`` is JSON (and valid against ``schema`` if given), else 0."""
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError:
        return 0.0
    if schema is None:
        return 1.0
    import jsonschema

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return 0.0
    return 1.0


def refusal_score(text: str) -> float:
    """0 when the answer is a refusal, else 1."""
    return 0.0 if _REFUSAL.search(text) else 1.0


def exact_match(text: str, reference: str) -> float:
    return 1.0 if " ".join(text.split()).lower() == " ".join(reference.split()).lower() else 0.0


def final_number(text: str) -> float | None:
    """The final numeric answer: GSM8K's ``#### n`` if present, else the last number."""
    found = _GSM8K_FINAL.findall(text)
    candidates = found or _NUMBER.findall(text)
    if not candidates:
        return None
    try:
        return float(candidates[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def numeric_answer(text: str, reference: str, tolerance: float = 1e-6) -> float:
    """1 when the final numbers of answer and reference agree."""
    got, want = final_number(text), final_number(reference)
    if got is None or want is None:
        return 0.0
    return 1.0 if math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance) else 0.0


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length (characters)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over word tokens (longest common subsequence)."""
    c, r = _tokens(candidate), _tokens(reference)
    if not c or not r:
        return 0.0
    previous = [0] * (len(r) + 1)
    for x in c:
        current = [0]
        for j, y in enumerate(r, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU with add-one smoothing of higher-order precisions (Lin & Och 2004)."""
    c, r = _tokens(candidate), _tokens(reference)
    if not c or not r:
        return 0.0
    log_total = 0.0
    for n in range(1, max_n + 1):
        cand = Counter(tuple(c[i : i + n]) for i in range(len(c) - n + 1))
        ref = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
        overlap = sum(min(count, ref[g]) for g, count in cand.items())
        total = max(sum(cand.values()), 0)
        if n == 1:
            if overlap == 0:
                return 0.0
            p = overlap / total
        else:
            p = (overlap + 1) / (total + 1)
        log_total += math.log(p) / max_n
    brevity = 1.0 if len(c) > len(r) else math.exp(1 - len(r) / len(c))
    return brevity * math.exp(log_total)
