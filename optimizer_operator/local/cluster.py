"""A local Kubernetes control plane for tests and the demo, envtest-style.

etcd (Debian's etcd-server) and kube-apiserver v1.20.2 (built once per machine
by ``hack/build-kube-apiserver.sh``) on loopback ports, plus kube-controller-
manager running only the garbage collector and namespace controllers, so
ownerReferences clean up as they do in a real cluster. There is no scheduler
or kubelet: Deployments never get pods.

Usage: ``python -m optimizer_operator.local.cluster up|down|status [--dir DIR]``.
Tests use :class:`ControlPlane` directly; ``up`` detaches the servers so they
outlive the command, and ``down`` stops them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.20.2")
CONTEXT_NAME = "llm-optimizer-local"
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The local control plane could not start or answer."""


def cache_dir() -> Path:
    """Where the project keeps the binaries it builds or fetches."""
    env = os.environ.get("LLMOPT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-optimizer"


def tool_path(name: str) -> Path:
    """Path of a cached tool (kubectl, helm, kube-apiserver-v…)."""
    return cache_dir() / "bin" / name


def _binary(name: str, hint: str) -> str:
    path = tool_path(name)
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ControlPlaneError(f"{name} not found at {path}; {hint}")


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LISTEN_FLOOR = 10000  # lowest port handed out: clear of the usual fixed services
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bind(port: int) -> int | None:
    """Bind 127.0.0.1:``port`` (0: the kernel's choice) and let go: the port, or None
    when it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
        return int(s.getsockname()[1])


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server to listen on next.

    Picked below the kernel's ephemeral range when there is room: a port from that range
    (what ``bind(0)`` returns) can be taken as the local end of any outgoing connection
    in the moment between this check and the server's own bind, and a test session
    opens connections all the time. Never the same port twice in one process.
    """
    low = _ephemeral_low()
    rng = secrets.SystemRandom()
    tries = 100 if low - _LISTEN_FLOOR >= 1000 else 0
    candidates = (rng.randrange(_LISTEN_FLOOR, low) for _ in range(tries))
    port = next((p for p in candidates if p not in _handed_out and _bind(p)), None) or _bind(0)
    if port is None:
        raise ControlPlaneError("no TCP port can be bound on 127.0.0.1")
    _handed_out.add(port)
    return port


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM to the server if
    # the process that started it dies, so a killed test run leaves nothing.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ garbage collector) on loopback, in ``workdir``."""

    workdir: Path
    attached: bool = True  # attached: servers die with this process
    with_controller_manager: bool = True
    etcd_port: int = 0
    etcd_peer_port: int = 0
    apiserver_port: int = 0
    token: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _argv: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # -- start -------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the servers and wait until the API server is ready."""
        apiserver = _binary(
            f"kube-apiserver-v{KUBE_VERSION}", "run `make deps` to build it (once per machine)"
        )
        etcd = _binary("etcd", "run `make deps` to install Debian's etcd-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd_port, self.etcd_peer_port, self.apiserver_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.token = secrets.token_hex(24)
        self._write_credentials()
        try:
            self._spawn(
                "etcd",
                [
                    etcd,
                    "--name=default",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                    f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
                    "--log-level=warn",
                ],
            )
            self._spawn(
                "kube-apiserver",
                [
                    apiserver,
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    f"--cert-dir={self.workdir / 'certs'}",
                    f"--secure-port={self.apiserver_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--insecure-port=0",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    "--api-audiences=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={self.workdir / 'sa.pub'}",
                    f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={self.workdir / 'tokens.csv'}",
                    "--allow-privileged=true",
                    "--v=0",
                ],
            )
            self._wait_ready(timeout)
            self._write_kubeconfig()
            cm = tool_path(f"kube-controller-manager-v{KUBE_VERSION}")
            if self.with_controller_manager and cm.exists():
                self._spawn(
                    "kube-controller-manager",
                    [
                        str(cm),
                        f"--kubeconfig={self.kubeconfig}",
                        "--controllers=garbagecollector,namespace,clusterrole-aggregation",
                        "--leader-elect=false",
                        "--port=0",
                        "--secure-port=0",
                        "--use-service-account-credentials=false",
                        "--v=0",
                    ],
                )
            self._save_state()
        except BaseException:
            self.stop()
            raise

    def _write_credentials(self) -> None:
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        if not key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(key), "2048"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
                check=True,
                capture_output=True,
                timeout=60,
            )
        # token,user,uid,"group1,group2"
        (self.workdir / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        os.chmod(self.workdir / "tokens.csv", 0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.attached else None,
            start_new_session=not self.attached,
        )
        log.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._argv[name] = argv

    def restart_apiserver(self, down_for: float = 0.0, timeout: float = 60.0) -> None:
        """Stop kube-apiserver (SIGTERM), wait ``down_for`` seconds, start it again on the
        same port with the same flags and data: what a control-plane upgrade does."""
        proc = self._procs["kube-apiserver"]
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # draining long watches: stop it the hard way
            proc.kill()
            proc.wait(timeout=15)
        time.sleep(down_for)
        self._spawn("kube-apiserver", self._argv["kube-apiserver"])
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # readiness probe only; clients verify the CA
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{tail}")
            req = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
            )
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    def _write_kubeconfig(self) -> None:
        ca = self.workdir / "certs" / "apiserver.crt"
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT_NAME,
                    "cluster": {"server": self.server, "certificate-authority": str(ca)},
                }
            ],
            "users": [{"name": f"{CONTEXT_NAME}-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {
                        "cluster": CONTEXT_NAME,
                        "user": f"{CONTEXT_NAME}-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": CONTEXT_NAME,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        os.chmod(self.kubeconfig, 0o600)

    def _save_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "pids": self.pids,
                    "server": self.server,
                    "kubeconfig": str(self.kubeconfig),
                    "etcdPort": self.etcd_port,
                },
                indent=2,
            )
        )

    # -- stop --------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """Stop every server this plane started (SIGTERM, then SIGKILL)."""
        stop_pids(list(reversed(list(self.pids.values()))), grace)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        self.pids.clear()
        self._procs.clear()
        if self.state_file.exists():
            self.state_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        status = Path(f"/proc/{pid}/stat")
        return status.exists() and ") Z " not in status.read_text()


def stop_pids(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM each pid, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def assert_local_context(kubeconfig: Path) -> None:
    """Refuse to go on unless ``kubeconfig`` points at the local test cluster."""
    config = yaml.safe_load(kubeconfig.read_text())
    current = config.get("current-context")
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    server = clusters.get(contexts.get(current, {}).get("cluster", ""), {}).get("server", "")
    if current != CONTEXT_NAME or not server.startswith("https://127.0.0.1:"):
        raise ControlPlaneError(
            f"refusing to run against context {current!r} ({server}): "
            f"only the local test cluster ({CONTEXT_NAME} on 127.0.0.1) is allowed"
        )


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ControlPlaneError(f"process exited with {proc.returncode} before {url} was up")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ControlPlaneError(f"{url} not answering after {timeout:.0f}s: {last}")


def start_operator(
    kubeconfig: Path,
    log_path: Path,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``python -m optimizer_operator operator`` against ``kubeconfig``.

    Returns the process and its liveness port, once the liveness endpoint answers.
    The operator dies with the calling process.
    """
    assert_local_context(kubeconfig)
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optimizer_operator",
            "operator",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
            *(extra_args or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {}), "KUBECONFIG": str(kubeconfig)},
        preexec_fn=_die_with_parent,
    )
    log.close()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout, proc)
    except ControlPlaneError:
        proc.kill()
        raise
    return proc, port


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optimizer_operator.local.cluster",
        description="Start or stop the local control plane (etcd + kube-apiserver).",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", default="out/cluster", help="State folder (default: out/cluster).")
    args = parser.parse_args(argv)
    workdir = Path(args.dir).resolve()
    state = workdir / "state.json"
    if args.command == "up":
        if state.exists():
            print(f"already up: export KUBECONFIG={workdir / 'kubeconfig'}")
            return 0
        plane = ControlPlane(workdir=workdir, attached=False)
        try:
            plane.start()
        except ControlPlaneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"local control plane up at {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    if args.command == "down":
        if not state.exists():
            print("not running")
            return 0
        pids = list(json.loads(state.read_text())["pids"].values())
        stop_pids(list(reversed(pids)))
        shutil.rmtree(workdir, ignore_errors=True)
        print("local control plane stopped")
        return 0
    if not state.exists():
        print("not running")
        return 1
    info = json.loads(state.read_text())
    alive = {n: _alive(p) for n, p in info["pids"].items()}
    print(
        json.dumps(
            {"server": info["server"], "kubeconfig": info["kubeconfig"], "processes": alive},
            indent=2,
        )
    )
    return 0 if all(alive.values()) else 1


if __name__ == "__main__":
    sys.exit(_main())
