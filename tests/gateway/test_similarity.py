"""The lexical similarity of a candidate's answer to stable's (gateway.similarity)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from optimizer_operator.gateway.similarity import MAX_CHARS, similarity

ANSWER = "Janet sells 16 - 3 - 4 = 9 eggs a day at $2 each, so she makes $18 every day."


def test_the_same_answer_is_one_and_unrelated_text_is_near_zero() -> None:
    assert similarity(ANSWER, ANSWER) == 1.0
    assert similarity(ANSWER, ANSWER.upper()) == 1.0  # case does not count
    assert similarity(ANSWER, "Photosynthesis converts light into chemical energy.") < 0.1


def test_a_rewording_scores_between_a_copy_and_an_unrelated_answer() -> None:
    reworded = "She sells 9 eggs daily (16 - 3 - 4) at $2 per egg: $18 every day."
    wrong = "Janet sells 16 - 3 = 13 eggs a day at $2 each, so she makes $26 every day."
    unrelated = "The capital of France is Paris."
    assert similarity(ANSWER, unrelated) < similarity(ANSWER, reworded) < 1.0
    assert similarity(ANSWER, reworded) < similarity(ANSWER, wrong)  # lexical, not correct


def test_empty_answers() -> None:
    assert similarity("", "") == 1.0
    assert similarity("", ANSWER) == 0.0 and similarity(ANSWER, "   ") == 0.0


def test_only_the_first_max_chars_count() -> None:
    long = ANSWER * (MAX_CHARS // len(ANSWER) + 50)
    assert similarity(long, long + " something else entirely, at great length" * 500) == 1.0


@given(st.text(max_size=300), st.text(max_size=300))
def test_symmetric_and_within_zero_and_one(a: str, b: str) -> None:
    s = similarity(a, b)
    assert 0.0 <= s <= 1.0
    assert abs(s - similarity(b, a)) < 1e-12
