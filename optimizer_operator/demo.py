"""``make demo``: the local control plane, the CRDs, the operator and the samples.

Everything started here dies with this process: Ctrl-C (or the end of a
non-interactive run) leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .localcluster import ControlPlane, ControlPlaneError, start_operator, stop_pids, tool_path

REPO = Path(__file__).resolve().parent.parent


def _kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(tool_path("kubectl")), *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _wait_ready(kubeconfig: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _kubectl(
            kubeconfig,
            "get",
            "llmopt",
            "-o",
            r'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}'
            r'{"\n"}{end}',
            check=False,
        )
        states = out.splitlines()
        if len(states) == 3 and all(state == "True" for state in states):
            return
        time.sleep(0.5)
    raise ControlPlaneError("samples did not become Ready in time; see out/demo/operator.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--wait",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep running until Ctrl-C (auto: when attached to a terminal)",
    )
    args = parser.parse_args(argv)
    out = REPO / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=Path(tempfile.mkdtemp(prefix="llmopt-demo-")))
    operator = None
    try:
        print("starting the local control plane (etcd + kube-apiserver v1.20.2) …", flush=True)
        plane.start()
        kc = plane.kubeconfig
        _kubectl(kc, "apply", "-f", str(REPO / "crds"))
        _kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        print("starting the operator …", flush=True)
        operator, _ = start_operator(kc, out / "operator.log", env={"LLMOPT_ROLLOUT_TICK": "2"})
        print(_kubectl(kc, "apply", "-f", str(REPO / "config" / "samples")), end="")
        _wait_ready(kc, 60)
        print("\n$ kubectl get llmopt")
        print(_kubectl(kc, "get", "llmopt"))
        print("$ kubectl get rollouts.optimizer.llmops.dev")
        print(_kubectl(kc, "get", "rollouts.optimizer.llmops.dev"))
        print(
            "$ kubectl get configmap support-bot-llm-config -o jsonpath='{.data.variants\\.json}'"
        )
        print(
            _kubectl(
                kc,
                "get",
                "configmap",
                "support-bot-llm-config",
                "-o",
                "jsonpath={.data.variants\\.json}",
            )
        )
        wait = args.wait == "yes" or (args.wait == "auto" and sys.stdin.isatty())
        if wait:
            print(
                f"The cluster and operator are running. In another shell:\n"
                f"  export KUBECONFIG={kc}\n  {tool_path('kubectl')} get llmopt\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            while operator.poll() is None:
                time.sleep(1)
            print("the operator exited; see out/demo/operator.log", file=sys.stderr)
            return 1
        return 0
    except ControlPlaneError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping …")
        return 0
    finally:
        if operator is not None:
            stop_pids([operator.pid])
        plane.stop()
        shutil.rmtree(plane.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
