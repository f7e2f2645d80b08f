"""The gateway's recordings read back as one model's labelled answers for one LLMConfig:
other LLMConfigs, namespaces, models and unlabelled lines left out, unreadable lines and
hashed prompts counted, a prompt's newest label winning, the newest ``limit`` kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

from optimizer_operator.gateway.recording import Recorder
from optimizer_operator.observe.recordings import labelled_answers


def _line(**row: object) -> str:
    base = {"prompt": "p", "model": "cheap", "response": "r", "correct": True,
            "llm_config": "bot", "namespace": "team", "variant": "v1", "ts": 1.0}  # fmt: skip
    return json.dumps({**base, **row})


def test_only_this_llmconfigs_labelled_answers_of_the_model_count(tmp_path: Path) -> None:
    (tmp_path / "pod-a").mkdir()
    (tmp_path / "pod-a" / "a.jsonl").write_text("\n".join([
        _line(prompt="q1", correct=True, ts=1),
        _line(prompt="q2", correct=False, ts=2),
        _line(prompt="q3", llm_config="other", ts=3),
        _line(prompt="q4", namespace="elsewhere", ts=4),
        _line(prompt="q5", model="strong", ts=5),
        _line(prompt="q6", correct=None, ts=6),
        _line(prompt="sha256:" + "0" * 64, ts=7),
        "not json", "[1, 2]", "",
        _line(prompt="q1", correct=False, ts=8),  # relabelled later: the newest wins
    ]) + "\n")  # fmt: skip
    found = labelled_answers(tmp_path, "team", "bot", "cheap", limit=100)
    assert found.prompts == ["q2", "q1"] and found.good == [False, False]
    assert found.unreadable == 2 and found.hashed == 1 and found.files == 1
    assert "2 labelled answers in 1 file(s)" in found.summary()
    assert "hashed prompt(s) skipped" in found.summary()


def test_the_newest_limit_are_kept_across_files_and_old_lines_without_namespace_count(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join(
        json.dumps({"prompt": f"o{i}", "model": "cheap", "correct": i % 2 == 0,
                    "llm_config": "bot", "ts": float(i)})  # recorded before namespaces
        for i in range(5)
    ))  # fmt: skip
    new = tmp_path / "new.jsonl"
    new.write_text("\n".join(_line(prompt=f"n{i}", ts=100.0 + i) for i in range(5)))
    os.utime(old, (1, 1))
    found = labelled_answers(tmp_path, "team", "bot", "cheap", limit=7)
    assert found.prompts == ["o3", "o4", "n0", "n1", "n2", "n3", "n4"]


async def test_what_the_gateways_recorder_writes_reads_back(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "gw.jsonl", redaction="none")
    rec.start()
    rec.record(prompt="What is 2+2?", model="cheap", response="4", correct=True,
               llm_config="bot", variant="v1", namespace="team")  # fmt: skip
    rec.record(prompt="Name a prime", model="cheap", response="9", correct=False,
               llm_config="bot", variant="v1", namespace="team")  # fmt: skip
    await rec.stop()
    found = labelled_answers(tmp_path, "team", "bot", "cheap", limit=10)
    assert found.prompts == ["What is 2+2?", "Name a prime"]
    assert found.good == [True, False] and found.answers == ["4", "9"]
    assert labelled_answers(tmp_path, "other-team", "bot", "cheap", limit=10).prompts == []
