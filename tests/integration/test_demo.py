"""`make demo` end to end: its own control plane, Prometheus, gateway, simulator and
operator; a better configuration promoted; the report and plot written; and nothing
left running afterwards, also when interrupted with Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO


def _leftovers(marker: str) -> list[str]:
    """Processes of a demo: servers name its work directory on their command line, the
    operator has its kubeconfig (inside that directory) in its environment."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        try:
            env = p.environ().get("KUBECONFIG", "")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            env = ""
        if marker in cmd or (marker in env and "optimizer_operator" in cmd):
            found.append(cmd[:200])
    return found


def _demo(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optimizer_operator.local.demo",
            "--out",
            str(out),
            "--timeout",
            "300",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.timeout(420)
def test_the_demo_promotes_a_cheaper_config_and_writes_its_report(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    try:
        output, _ = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the demo cleans up on Ctrl-C
        output, _ = proc.communicate(timeout=60)
        raise AssertionError(f"the demo did not finish in 400 s:\n{output[-6000:]}") from None
    assert proc.returncode == 0, output[-4000:]
    report = (tmp_path / "report.md").read_text()
    assert "Promoted **" in report and "| cost per request (USD) |" in report
    cost_row = next(line for line in report.splitlines() if line.startswith("| cost per request"))
    assert cost_row.split("|")[4].strip().startswith("-"), cost_row  # cheaper than the start
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers("llmopt-demo-") == []


@pytest.mark.timeout(180)
def test_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if "driving load" in line or time.monotonic() > deadline:
            break
    running = _leftovers("llmopt-demo-")
    if not any("optimizer_operator operator" in c for c in running):
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        raise AssertionError(
            f"no demo operator running after the demo printed:\n{''.join(seen)}{rest}"
            f"\n(exit {proc.returncode}; running: {running})"
        )
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest[-3000:]
    assert "nothing is left running" in rest
    time.sleep(1)
    assert _leftovers("llmopt-demo-") == []
