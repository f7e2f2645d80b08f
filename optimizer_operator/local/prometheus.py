"""A local Prometheus (Debian's ``prometheus``) for tests and the demo.

Started on a free loopback port with a scrape config for the given targets,
data in a temp folder, dying with the process that started it. Optionally served the
way managed and secured Prometheus servers are: over TLS and behind basic auth (its own
``--web.config.file``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cluster import ControlPlaneError, _die_with_parent, free_port, stop_pids


@dataclass
class LocalPrometheus:
    """Prometheus scraping ``targets`` (``host:port`` strings) every ``interval``."""

    workdir: Path
    targets: list[str]
    interval: str = "1s"
    port: int = 0
    tls: tuple[Path, Path] | None = None  # (certificate, key) to serve HTTPS with
    ca_file: Path | None = None  # what signed that certificate (for its own probes)
    basic_auth: tuple[str, str] | None = None  # (user, password) every request needs
    extra_jobs: list[dict[str, Any]] = field(default_factory=list)  # more scrape_configs
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _web_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.tls:
            config["tls_server_config"] = {
                "cert_file": str(self.tls[0]),
                "key_file": str(self.tls[1]),
            }
        if self.basic_auth:
            import bcrypt  # a test dependency: only a secured Prometheus needs it

            user, password = self.basic_auth
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            config["basic_auth_users"] = {user: hashed}
        return config

    def _open(self, path: str, timeout: float) -> Any:
        """GET ``path`` as a client with the right CA and credentials would."""
        request = urllib.request.Request(self.url + path)
        if self.basic_auth:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def set_targets(self, targets: list[str]) -> None:
        """Replace the scrape targets (file discovery: Prometheus picks them up in ~1 s)."""
        self.targets = list(targets)
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": self.targets}]))
        tmp.replace(self.targets_file)

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise ControlPlaneError("prometheus not found; run `make deps` (Debian prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart keeps its address
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": [
                {
                    "job_name": "llm-gateway",
                    "scrape_interval": self.interval,
                    "scrape_timeout": self.interval,
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                    ],
                },
                *self.extra_jobs,
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        web = self._web_config()
        web_args = []
        if web:
            (self.workdir / "web.yml").write_text(yaml.safe_dump(web))
            web_args = [f"--web.config.file={self.workdir / 'web.yml'}"]
        self.set_targets(self.targets)
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
                *web_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]
                raise ControlPlaneError(f"prometheus exited with {self._proc.returncode}:\n{tail}")
            try:
                with self._open("/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise ControlPlaneError(f"prometheus not ready after {timeout:.0f}s")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (each with ``metric`` and ``value``)."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with self._open(path, timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> bool:
        with self._open("/api/v1/targets", timeout=10) as resp:
            active = json.load(resp)["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self._proc is not None:
            stop_pids([self._proc.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
            self._proc = None
