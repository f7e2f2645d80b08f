"""A local PostgreSQL (Debian's ``postgresql``) for tests and the demo.

A throwaway cluster (initdb) on a free loopback port, trust authentication on
127.0.0.1 only, fsync off, data in a temp folder, dying with the process that
started it. PostgreSQL refuses to run as root, so under root the server runs
as the ``postgres`` system user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import ControlPlaneError, _die_with_parent, free_port, stop_pids

USER = "llmopt"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise ControlPlaneError("PostgreSQL not found; run `make deps` (Debian postgresql)")
    return Path(found[-1]).parent


@dataclass
class LocalPostgres:
    """One PostgreSQL server; ``url`` is a libpq URL for psycopg."""

    workdir: Path | None = None
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres?connect_timeout=5"

    def _as_owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid

    def _preexec(self) -> None:
        _die_with_parent()
        owner = self._as_owner()
        if owner is not None:
            os.setgid(owner[1])
            os.setuid(owner[0])

    def start(self, timeout: float = 60.0) -> None:
        bindir = _bindir()
        if self.workdir is None:
            # Not under pytest's root-only tmp: the postgres user must reach it.
            self.workdir = Path(tempfile.mkdtemp(prefix="llmopt-pg-"))
        owner = self._as_owner()
        data = self.workdir / "data"
        if not data.exists():
            if owner is not None:
                os.chown(self.workdir, *owner)
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                preexec_fn=self._preexec,
                timeout=120,
            )
        self.port = self.port or free_port()  # a restart keeps its address
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self._preexec,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.workdir / "postgres.log").read_text(errors="replace")[-2000:]
                raise ControlPlaneError(f"postgres exited with {self._proc.returncode}:\n{tail}")
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
                timeout=10,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise ControlPlaneError(f"postgres not ready after {timeout:.0f}s")

    def stop(self) -> None:
        if self._proc is not None:
            stop_pids([self._proc.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def remove(self) -> None:
        self.stop()
        if self.workdir is not None and self.workdir.name.startswith("llmopt-pg-"):
            shutil.rmtree(self.workdir, ignore_errors=True)
