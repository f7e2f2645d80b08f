"""The CLI as kubectl-argo-rollouts users expect it, against the real API server and
operator: status that gates a pipeline by its exit code, a live view of a rollout,
kubectl's cluster flags, set model|param, version and completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from tests.conftest import kubectl, wait_for

BIN = Path(sys.executable).parent / "llm-optimizer"


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _env(kubeconfig: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(kubeconfig)}


def _apply(
    kubeconfig: Path, ns: str, name: str, steps: list[dict[str, Any]], model: str = "sim-small"
) -> None:
    docs = [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMConfig",
         "metadata": {"name": "bot", "namespace": ns},
         "spec": {"provider": "simulator", "model": "sim-medium"}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"targetRef": {"name": "bot"},
                  "candidate": {"provider": "simulator", "model": model},
                  "steps": steps}},
    ]  # fmt: skip
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def _phase(api: client.ApiClient, ns: str, name: str) -> str | None:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "rollouts", name
    )
    return (obj.get("status") or {}).get("phase")


def test_status_gates_a_pipeline_by_its_exit_code(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    env, ns = _env(kubeconfig), namespace
    _apply(kubeconfig, ns, "r1", [{"setWeight": 20}, {"pause": {}}])
    wait_for(lambda: _phase(api, ns, "r1") == "Paused", 30, "the pause")
    started = time.monotonic()
    waited = _cli("status", "r1", "-n", ns, "--timeout", "2s", env=env)
    assert waited.returncode == 6, waited
    assert time.monotonic() - started < 20  # it gave up at the timeout, not later
    assert f"error: rollout {ns}/r1 still Paused after 2s" in waited.stderr
    assert "Paused:" in waited.stdout
    once = _cli("status", "r1", "-n", ns, env=env)  # no --timeout: one look
    assert once.returncode == 6 and "phase Paused" in once.stdout

    # Promoted while status waits: it returns 0 once the rollout has ended.
    promoter = threading.Timer(2.0, lambda: _cli("rollout", "promote", "r1", "-n", ns,
                                                 "--full", env=env))  # fmt: skip
    promoter.start()
    done = _cli("status", "r1", "-n", ns, "--timeout", "60s", env=env)
    promoter.join()
    assert done.returncode == 0, done
    assert "Promoted:" in done.stdout.splitlines()[-1]

    _apply(kubeconfig, ns, "r2", [{"setWeight": 20}, {"pause": {}}], model="sim-large")
    wait_for(lambda: _phase(api, ns, "r2") == "Paused", 30, "r2's pause")
    assert _cli("rollout", "abort", "r2", "-n", ns, env=env).returncode == 0
    aborted = _cli("status", "r2", "-n", ns, "--timeout", "60s", env=env)
    assert aborted.returncode == 5, aborted
    assert "Aborted:" in aborted.stdout
    missing = _cli("status", "nope", "-n", ns, "--timeout", "5s", env=env)
    assert missing.returncode == 3 and f"rollout {ns}/nope not found" in missing.stderr


def test_get_rollout_watch_shows_a_step_change(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    ns = namespace
    _apply(kubeconfig, ns, "live", [{"setWeight": 20}, {"pause": {"duration": "3s"}},
                                    {"setWeight": 60}, {"pause": {}}])  # fmt: skip
    wait_for(lambda: _phase(api, ns, "live"), 30, "the rollout to start")
    proc = subprocess.Popen(
        [str(BIN), "get", "rollout", "live", "-n", ns, "-w", "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(kubeconfig),
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any(line.startswith("Weight:      60%") for line in lines), 60,
                 "the watch to show the 60% step")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        reader.join(timeout=10)
    weights = [line.split()[1] for line in lines if line.startswith("Weight:")]
    assert "20%" in weights and weights.index("20%") < weights.index("60%"), weights
    assert any("  ->  3: pause (until promoted)" in line for line in lines), lines
    assert any("done  0: setWeight 20%" in line for line in lines)
    assert proc.returncode == 0


def test_kubectls_cluster_flags(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    ns = namespace
    _apply(kubeconfig, ns, "r", [{"setWeight": 10}, {"pause": {}}])
    bare = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    bare["HOME"] = str(kubeconfig.parent / "no-home")  # no ~/.kube/config to fall back on
    given = _cli("--kubeconfig", str(kubeconfig), "get", "rollouts", "-n", ns, env=bare)
    assert given.returncode == 0 and "r " in given.stdout, given
    after = _cli("get", "rollouts", "-n", ns, "--kubeconfig", str(kubeconfig), env=bare)
    assert after.returncode == 0, after  # after the command too, as kubectl takes them
    context = yaml.safe_load(kubeconfig.read_text())["current-context"]
    named = _cli("get", "rollouts", "-n", ns, "--context", context, env=_env(kubeconfig))
    assert named.returncode == 0, named
    wrong = _cli("get", "rollouts", "-n", ns, "--context", "nope", env=_env(kubeconfig))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().startswith("error: cannot reach the cluster:")
    assert "nope" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    slow = _cli("get", "rollouts", "-n", ns, "--request-timeout", "0", env=_env(kubeconfig))
    assert slow.returncode == 2 and "--request-timeout" in slow.stderr


def test_set_model_and_param_write_the_llmconfigs_spec_checked_first(
    api: client.ApiClient, kubeconfig: Path, operator: Path, namespace: str
) -> None:
    env, ns = _env(kubeconfig), namespace
    _apply(kubeconfig, ns, "r", [{"setWeight": 10}, {"pause": {}}])
    custom = client.CustomObjectsApi(api)

    def spec() -> dict[str, Any]:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", "bot")
        return dict(obj["spec"])

    out = _cli("set", "param", "bot", "temperature=0.3", "maxTokens=256", "-n", ns, env=env)
    assert out.returncode == 0, out
    assert spec()["parameters"] == {"temperature": "0.3", "maxTokens": 256}
    out = _cli("set", "param", "bot", "temperature-", "-n", ns, env=env)
    assert out.returncode == 0 and spec()["parameters"] == {"maxTokens": 256}
    before = spec()
    bad = _cli("set", "param", "bot", "temperature=7", "-n", ns, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: llmconfig"), bad
    assert "temperature" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert spec() == before  # nothing written
    out = _cli("set", "model", "bot", "sim-large", "-n", ns, env=env)
    assert out.returncode == 0 and spec()["model"] == "sim-large"
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmconfigs", "bot")
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "llm-optimizer-cli" in managers
    assert _cli("set", "model", "nope", "x", "-n", ns, env=env).returncode == 3
    usage = _cli("set", "param", "bot", "bogus=1", "-n", ns, env=env)
    assert usage.returncode == 2 and "'bogus' is not a parameter" in usage.stderr


def test_version_and_bash_completion() -> None:
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("llm-optimizer 0.")
    script = _cli("completion", "bash").stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"{script}\nCOMP_WORDS=(llm-optimizer {line}); COMP_CWORD={len(words)}\n"
            '_llm_optimizer; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert complete("st") == ["status"]
    assert set(complete("get", "ro")) == {"rollout", "rollouts"}
    assert "--watch" in complete("get", "rollout", "x", "--w")
    assert complete("rollout", "pro") == ["promote"]
    assert complete("--context", "c", "se") == ["set"]
    zsh = _cli("completion", "zsh").stdout
    assert zsh.startswith("#compdef llm-optimizer") and "bashcompinit" in zsh
