"""The CLI's offline commands, the harness's refusal of foreign clusters, and the ports
it gives its servers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from optimizer_operator.cli.main import main
from optimizer_operator.local.cluster import (
    ControlPlaneError,
    _ephemeral_low,
    assert_local_context,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]


def test_validate_accepts_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (REPO / "config" / "samples").glob("*.yaml"))
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": valid") == 3


def test_validate_reports_one_line_per_bad_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = yaml.safe_load((REPO / "config" / "samples" / "llmconfig.yaml").read_text())
    bad["spec"]["parameters"]["temperature"] = "9"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "LLMConfig/support-bot: spec.parameters.temperature" in err[0]


def test_crds_check_detects_drift(tmp_path: Path) -> None:
    assert main(["crds", "--out", str(tmp_path)]) == 0
    assert main(["crds", "--out", str(tmp_path), "--check"]) == 0
    first = sorted(tmp_path.iterdir())[0]
    first.write_text(first.read_text() + "# edited by hand\n")
    assert main(["crds", "--out", str(tmp_path), "--check"]) == 1


def _kubeconfig(tmp_path: Path, context: str, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "contexts": [{"name": context, "context": {"cluster": "c"}}],
                "current-context": context,
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("context", "server"),
    [
        ("prod", "https://127.0.0.1:6443"),
        ("llm-optimizer-local", "https://10.0.0.1:6443"),
        ("kind-llm-optimizer", "https://127.0.0.1:6443"),
    ],
)
def test_harness_refuses_other_clusters(tmp_path: Path, context: str, server: str) -> None:
    with pytest.raises(ControlPlaneError, match="refusing to run"):
        assert_local_context(_kubeconfig(tmp_path, context, server))


def test_harness_accepts_the_local_cluster(tmp_path: Path) -> None:
    assert_local_context(_kubeconfig(tmp_path, "llm-optimizer-local", "https://127.0.0.1:41234"))


def test_servers_get_ports_outgoing_connections_cannot_take_and_never_the_same_twice() -> None:
    """The harness's servers listen below the kernel's ephemeral range, so no outgoing
    connection of a busy test session can take a port between its choice and the bind."""
    low = _ephemeral_low()
    if low < 11000:
        pytest.skip(f"this machine's ephemeral ports start at {low}: no room below them")
    listeners = []
    try:
        ports = []
        for _ in range(50):
            port = free_port()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", port))  # free when handed out
            s.listen()
            listeners.append(s)
            ports.append(port)
        assert all(10000 <= p < low for p in ports), ports
        assert len(set(ports)) == len(ports)
    finally:
        for s in listeners:
            s.close()


def test_the_operator_starts_kopf_again_after_a_404_on_a_watched_kind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kopf ends the operator when a watch meets 404 (a restarting API server before it
    serves the custom resources' routes); the operator command starts it again. kopf is
    replaced here by a stand-in that fails that way once: the real race needs an API
    server caught mid-start, which no test can time."""
    import argparse
    import asyncio

    import kopf
    from kopf._cogs.clients.errors import APINotFoundError

    from optimizer_operator.cli import main as cli_main

    calls: list[int] = []

    async def operator(**_: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise APINotFoundError("404 page not found", status=404, headers={})

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(cli_main.asyncio, "sleep", no_wait)
    args = argparse.Namespace(liveness="", peering=False)
    asyncio.run(cli_main._operate([], args))
    assert len(calls) == 2
    assert "answered 404" in capsys.readouterr().err
