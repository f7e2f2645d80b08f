"""`make demo`'s driver and the control plane's own lifecycle leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from optimizer_operator.localcluster import ControlPlane, _alive
from tests.conftest import REPO


def test_control_plane_stop_leaves_no_process(tmp_path: Path) -> None:
    plane = ControlPlane(workdir=tmp_path / "cp")
    plane.start()
    pids = list(plane.pids.values())
    assert len(pids) >= 2 and all(_alive(p) for p in pids)
    plane.stop()
    assert not any(_alive(p) for p in pids)


def test_demo_shows_the_samples_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "optimizer_operator.demo", "--wait", "no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "llmconfig.optimizer.llmops.dev/support-bot" in out
    assert "optimizationpolicy.optimizer.llmops.dev/support-bot" in out
    assert "rollout.optimizer.llmops.dev/support-bot-cooler" in out
    # The sample Rollout has taken its first step: 10% of traffic to the candidate.
    assert '"weight": 9000' in out and '"weight": 1000' in out
    rows = [line.split() for line in out.splitlines()]
    assert ["support-bot-cooler", "support-bot", "Progressing", "1", "10"] in [
        row[:5] for row in rows
    ]
    leftovers = subprocess.run(["pgrep", "-f", "llmopt-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"demo left processes: {leftovers.stdout}"
