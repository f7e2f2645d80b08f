"""Shared fixtures. Cluster fixtures start the real local control plane once per session."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from optimizer_operator.local.cluster import (
    ControlPlane,
    assert_local_context,
    start_operator,
    stop_pids,
    tool_path,
)
from optimizer_operator.local.postgres import LocalPostgres
from optimizer_operator.local.prometheus import LocalPrometheus

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs the local control plane.
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(workdir=tmp_path_factory.mktemp("cluster"))
    plane.start()
    assert_local_context(plane.kubeconfig)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the pinned kubectl against the local test cluster."""
    assert_local_context(kubeconfig)
    result = subprocess.run(
        [str(tool_path("kubectl")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture(scope="session")
def crds_installed(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "-f", str(REPO / "crds"))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """A real Prometheus for the session; tests add their gateways with ``set_targets``."""
    prom = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), [], interval="1s")
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL for the session (a throwaway cluster on a loopback port)."""
    pg = LocalPostgres()
    pg.start()
    yield pg
    pg.remove()


class OperatorProcess:
    """The operator under test, as a process the tests may kill and restart."""

    def __init__(self, kubeconfig: Path, log: Path, env: dict[str, str]) -> None:
        self.kubeconfig, self.log, self.env = kubeconfig, log, env
        self.start()
        SESSION_OPERATORS.append(self)

    def start(self) -> None:
        self.proc, _ = start_operator(self.kubeconfig, self.log, env=self.env)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as a crash or an OOM kill."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_pids([self.proc.pid])


# Operators started for the session: a test that must be the only operator acting (the
# chart's RBAC test) stops them and starts them again.
SESSION_OPERATORS: list[OperatorProcess] = []


@pytest.fixture()
def sole_operator() -> Iterator[None]:
    """Stop the session's cluster-wide operator (if one runs) so the only operator acting
    is the test's own (or none); start it again afterwards."""
    running = [p for p in SESSION_OPERATORS if p.proc.poll() is None]
    for p in running:
        p.stop()
    yield
    for p in running:
        p.start()


@pytest.fixture(scope="session")
def recordings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session operator's recordings directory (LLMOPT_RECORDINGS_DIR): gateways under
    test record into it, as gateways in a cluster write to a volume the operator reads."""
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="session")
def operator_process(
    kubeconfig: Path,
    crds_installed: None,
    prometheus: LocalPrometheus,
    recordings_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The real operator process, cluster-wide, analysing rollouts with the session's
    Prometheus and ticking every second."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = OperatorProcess(
        kubeconfig,
        log,
        {
            "LLMOPT_PROMETHEUS_URL": prometheus.url,
            "LLMOPT_ROLLOUT_TICK": "1",
            "LLMOPT_POLICY_TICK": "1",
            "LLMOPT_RECORDINGS_DIR": str(recordings_dir),
        },
    )
    yield proc
    proc.stop()
    if os.environ.get("LLMOPT_SHOW_OPERATOR_LOG"):
        print(log.read_text())


@pytest.fixture(scope="session")
def operator(operator_process: OperatorProcess) -> Path:
    """The running operator; its log file."""
    return operator_process.log


@pytest.fixture()
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``.

    This waits for eventual consistency (the operator reacts to watch events);
    it does not retry failures of the thing under test.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
