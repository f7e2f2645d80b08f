"""The control plane's own lifecycle leaves nothing behind (the demo: test_demo.py)."""

from __future__ import annotations

from pathlib import Path

from optimizer_operator.local.cluster import ControlPlane, _alive


def test_control_plane_stop_leaves_no_process(tmp_path: Path) -> None:
    plane = ControlPlane(workdir=tmp_path / "cp")
    plane.start()
    pids = list(plane.pids.values())
    assert len(pids) >= 2 and all(_alive(p) for p in pids)
    plane.stop()
    assert not any(_alive(p) for p in pids)
