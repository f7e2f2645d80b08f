"""The kind path (Docker) checked as far as this machine allows: no Docker engine runs
here, so the image is not built; the Dockerfile is parsed, the package it installs is
built as a wheel and inspected, and the Make targets' commands are read with `make -n`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation"
    return out


def test_the_dockerfile_parses_and_runs_as_non_root() -> None:
    steps = _instructions((REPO / "Dockerfile").read_text())
    assert all(word in INSTRUCTIONS for word, _ in steps), steps
    assert steps[0][0] == "FROM"
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) == 2 and " AS build" in stages[0]  # build tools stay in stage 1
    final = steps[[w for w, _ in steps].index("FROM", 1) :]
    (user,) = [args for word, args in final if word == "USER"]
    assert not user.startswith(("0", "root")), user
    (entry,) = [args for word, args in final if word == "ENTRYPOINT"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entry)[0] in scripts
    for word, args in steps:
        if word == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), src


def test_the_image_package_carries_its_data_files(tmp_path: Path) -> None:
    """What `pip install .` puts in the image: the code and the packaged catalogs."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("llm_optimizer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "optimizer_operator/providers/data/pricing.yaml",
        "optimizer_operator/providers/data/simulator-fleet.yaml",
        "optimizer_operator/handlers/telemetry.py",
    ):
        assert needed in names, needed


def _make_n(target: str) -> str:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), target,
         "IMAGE=registry.example/llmopt:1.2"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return re.sub(r"\\\n\s*", "", out.stdout)


def test_the_kind_targets_run_the_right_commands() -> None:
    assert "kind create cluster --name llm-optimizer --config kind-config.yaml" in _make_n(
        "kind-up"
    )
    assert "docker build -t registry.example/llmopt:1.2 ." in _make_n("image")
    assert "kind load docker-image registry.example/llmopt:1.2 --name llm-optimizer" in (
        _make_n("kind-load")
    )
    deploy = _make_n("deploy")
    assert "helm upgrade --install llm-optimizer charts/llm-optimizer" in deploy
    assert "--set image.repository=registry.example/llmopt" in deploy
    assert "--set image.tag=1.2" in deploy
    demo = _make_n("demo-kind").splitlines()
    assert demo[0].startswith("kind create cluster") and "kubectl apply -f config/samples/" in demo


def test_kind_config_is_a_kind_cluster() -> None:
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker"]
