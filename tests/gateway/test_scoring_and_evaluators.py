"""Scoring functions and the evaluation queue."""

from __future__ import annotations

import asyncio

import pytest

from optimizer_operator.gateway import scoring
from optimizer_operator.gateway.evaluators import (
    EvaluationQueue,
    EvaluatorSpec,
    Sample,
    build_evaluator,
    parse_specs,
)
from optimizer_operator.gateway.metrics import GatewayMetrics
from optimizer_operator.gateway.ratelimit import RateLimiter
from optimizer_operator.gateway.recording import redact


def test_numeric_answer_reads_gsm8k_finals() -> None:
    assert scoring.numeric_answer("so 3*4 = 12 apples.\n#### 12", "#### 12") == 1.0
    assert scoring.numeric_answer("The answer is 1,250.", "1250") == 1.0
    assert scoring.numeric_answer("The answer is 13", "12") == 0.0
    assert scoring.numeric_answer("no numbers here", "12") == 0.0


def test_text_similarities() -> None:
    assert scoring.exact_match(" Paris ", "paris") == 1.0
    assert scoring.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert scoring.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert 0 < scoring.rouge_l("the cat sat", "the cat sat on the mat") < 1
    assert scoring.bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert scoring.bleu("completely different words", "the cat sat on the mat") == 0.0


def test_heuristics() -> None:
    assert scoring.refusal_score("I'm sorry, I can't help with that.") == 0.0
    assert scoring.refusal_score("Sure: 42.") == 1.0
    assert scoring.json_score('{"a": 1}') == 1.0
    assert scoring.json_score('```json\n{"a": 1}\n```') == 1.0
    assert scoring.json_score("{a: 1}") == 0.0
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert scoring.json_score('{"a": 1}', schema) == 1.0
    assert scoring.json_score('{"a": "x"}', schema) == 0.0
    assert scoring.length_score("abc", 1, 10) == 1.0
    assert scoring.length_score("", 1, 10) == 0.0
    assert scoring.length_score("x" * 15, 1, 10) == pytest.approx(0.5)


def test_evaluator_specs_parse_and_unknown_names_are_refused() -> None:
    assert parse_specs("ground_truth=1,refusal=0.2,length") == [
        EvaluatorSpec("ground_truth", 1.0),
        EvaluatorSpec("refusal", 0.2),
        EvaluatorSpec("length", 1.0),
    ]
    with pytest.raises(ValueError, match="rate must be within"):
        parse_specs("refusal=2")
    with pytest.raises(ValueError, match="unknown evaluator 'vibes'"):
        build_evaluator("vibes", {})
    with pytest.raises(ValueError, match="needs option 'model'"):
        build_evaluator("llm_judge", {})


def _sample(i: int = 0, reference: str | None = None) -> Sample:
    return Sample(
        response_id=f"r{i}",
        llm_config="bot",
        variant="v1",
        prompt="q",
        response="#### 12",
        finish_reason="stop",
        reference=reference,
        ground_truth=0.5,
    )


def _count(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_queue_scores_off_path_and_skips_inapplicable() -> None:
    metrics = GatewayMetrics()
    queue = EvaluationQueue(parse_specs("ground_truth,numeric_answer"), metrics)
    queue.start()
    queue.submit(_sample(1, reference="12"))
    queue.submit(_sample(2))  # no reference: numeric_answer does not apply
    await queue.drain()
    await queue.stop()
    assert _count(metrics, "llmopt_quality_score_count", evaluator="ground_truth") == 2
    assert _count(metrics, "llmopt_quality_score_sum", evaluator="numeric_answer") == 1.0
    assert (
        _count(
            metrics,
            "llmopt_evaluations_total",
            evaluator="numeric_answer",
            outcome="not_applicable",
        )
        == 1
    )


async def test_stop_ends_the_workers_whenever_it_comes() -> None:
    """Stopping while a score is just being delivered ends the workers too. (Python 3.11's
    ``asyncio.wait_for`` returned the result and swallowed the cancellation when both came
    in the same turn of the loop; the worker then waited on the queue forever and the
    gateway's shutdown with it.) Stop lands at each point of a score's delivery in turn."""
    for turns in range(8):
        queue = EvaluationQueue(parse_specs("ground_truth"), GatewayMetrics(), workers=1)
        queue.start()
        await asyncio.sleep(0)  # the worker waits on the queue
        queue.submit(_sample(1))
        for _ in range(turns):
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await queue.stop()
        assert all(t.done() for t in queue._tasks), turns


async def test_full_queue_drops_and_counts() -> None:
    metrics = GatewayMetrics()
    queue = EvaluationQueue(parse_specs("ground_truth"), metrics, maxsize=3)
    for i in range(10):  # no workers running: the queue fills at 3
        queue.submit(_sample(i))
    assert _count(metrics, "llmopt_evaluations_dropped_total", evaluator="ground_truth") == 7


async def test_sampling_rate_is_respected() -> None:
    metrics = GatewayMetrics()
    queue = EvaluationQueue(parse_specs("ground_truth=0.1"), metrics, maxsize=100000, seed=7)
    for i in range(5000):
        queue.submit(_sample(i))
    assert 400 < queue._queue.qsize() < 600  # Binomial(5000, 0.1): mean 500, sd 21


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=2, burst=2)
    assert limiter.acquire("a", now=0.0) == 0 and limiter.acquire("a", now=0.0) == 0
    assert limiter.acquire("a", now=0.0) == pytest.approx(0.5)
    assert limiter.acquire("a", now=0.5) == 0


def test_recording_redaction() -> None:
    text = "mail bob@example.com or call +1 (555) 123-4567 about order 42"
    assert redact(text, "pii") == "mail <email> or call <number> about order 42"
    assert redact(text, "hash").startswith("sha256:") and "bob" not in redact(text, "hash")
    assert redact(text, "none") == text
    with pytest.raises(ValueError, match="unknown redaction"):
        redact(text, "some")


def test_asyncio_is_not_needed_for_pure_scorers() -> None:
    assert asyncio.iscoroutinefunction(build_evaluator("refusal", {}).score)
