"""Faults of the metrics side: Prometheus answering garbage, then answering too slowly.

The operator (real, on its own local control plane) is pointed at a loopback HTTP
server that plays a broken Prometheus: that server is the fault being injected. A
real Prometheus that is simply down is covered by test_canary_e2e's hold test.
Expected: the rollout holds at its weight, says why, and neither promotes nor rolls
back on missing data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.cluster import ControlPlane, start_operator, stop_pids
from tests.conftest import wait_for
from tests.faults.test_control_plane_faults import (  # noqa: F401
    _get,
    _llmconfig,
    _ready,
    _rollout,
    plane,
)

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


class BrokenPrometheus:
    """Answers every query with HTML (mode "garbage") or after ``delay`` s ("slow")."""

    def __init__(self) -> None:
        self.mode = "garbage"
        self.delay = 5.0
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.hits += 1
                if outer.mode == "slow":
                    time.sleep(outer.delay)
                body = b"<html><body>502 Bad Gateway</body></html>"
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # "slow": the operator's client gave up first, as it should

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def broken() -> Iterator[BrokenPrometheus]:
    b = BrokenPrometheus()
    yield b
    b.close()


def _status(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return _get(custom, "rollouts", name).get("status") or {}


@pytest.mark.timeout(240)
def test_garbage_or_slow_prometheus_holds_the_rollout(
    plane: ControlPlane,  # noqa: F811
    broken: BrokenPrometheus,
    tmp_path: Path,
) -> None:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    custom = client.CustomObjectsApi(api)
    proc, _ = start_operator(
        plane.kubeconfig,
        tmp_path / "operator.log",
        env={
            "LLMOPT_PROMETHEUS_URL": broken.url,
            "LLMOPT_PROMETHEUS_TIMEOUT": "1",
            "LLMOPT_ROLLOUT_TICK": "1",
        },
    )
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "llmconfigs", _llmconfig("bot")
        )
        wait_for(lambda: _ready(custom, "bot"), 60, "LLMConfig bot Ready")
        rollout = _rollout(
            "guarded",
            "bot",
            "0.1",
            [{"setWeight": 20}, {"analysis": {"measurements": 2}}],
            analysis={"interval": "1s", "window": "10s", "minSampleSize": 10},
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", "rollouts", rollout)
        wait_for(
            lambda: _status(custom, "guarded").get("phase") == "Holding",
            60,
            "Holding on garbage answers",
        )
        garbage = _status(custom, "guarded")
        assert garbage["canaryWeight"] == 20 and broken.hits > 0
        degraded = next(c for c in garbage["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "MetricsUnavailable"
        # Slow now: every query takes 5 s against a 1 s client timeout.
        broken.mode = "slow"
        hits = broken.hits
        wait_for(lambda: broken.hits > hits + 2, 60, "queries against the slow server")
        time.sleep(3)
        slow = _status(custom, "guarded")
        assert slow["phase"] == "Holding" and slow["canaryWeight"] == 20, slow
        history = _get(custom, "llmconfigs", "bot")["status"]["history"]
        assert len(history) == 1  # nothing promoted on missing data
    finally:
        stop_pids([proc.pid])
