"""``make demo``: the whole optimization loop on this machine, live, then a report.

It starts the local control plane (etcd + kube-apiserver), Prometheus, the
operator, and the gateway in front of the simulator fleet; applies an
LLMConfig (an expensive model, sim-large) and an OptimizationPolicy (cheapest
configuration with quality at least 0.80); drives load through the gateway;
shows trials, rollouts, weights and verdicts live until the policy promotes a
better configuration; then writes ``out/demo/report.md`` and
``out/demo/pareto.png``.

Everything started here dies with this process: Ctrl-C (or the end of the run)
leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from ..api import GROUP, VERSION
from .cluster import (
    ControlPlane,
    ControlPlaneError,
    free_port,
    start_operator,
    stop_pids,
    tool_path,
)
from .prometheus import LocalPrometheus

REPO = Path(__file__).resolve().parents[2]  # optimizer_operator/local/demo.py -> the repository
NAMESPACE = "demo"
FLOOR = "0.80"
LLMCONFIG: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "LLMConfig",
    "metadata": {"name": "support-bot", "namespace": NAMESPACE},
    "spec": {
        "provider": "simulator",
        "model": "sim-large",
        "parameters": {"temperature": "0.3", "maxTokens": 512},
    },
}
POLICY: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "OptimizationPolicy",
    "metadata": {"name": "support-bot-cost", "namespace": NAMESPACE},
    "spec": {
        "targetRef": {"name": "support-bot"},
        "mode": "auto",
        "objectives": [
            {"metric": "cost_per_request_usd", "direction": "minimize", "weight": "0.7"},
            {"metric": "quality_score", "direction": "maximize", "weight": "0.3"},
        ],
        "constraints": {"minQuality": FLOOR, "maxLatencyP95Seconds": "30"},
        "searchSpace": {
            "models": [
                {"provider": "simulator", "model": m}
                for m in ("sim-small", "sim-medium", "sim-large")
            ],
            "parameters": [
                {"name": "temperature", "type": "float", "low": "0.1", "high": "0.5", "step": "0.1"}
            ],
        },
        "sampler": {"name": "tpe", "seed": 7},
        "schedule": {"triggers": [{"type": "interval", "every": "2s"}], "cooldown": "1s"},
        "budgets": {"maxTrials": 8, "maxRolloutsPerDay": 20},
        "rolloutTemplate": {
            "steps": [{"setWeight": 50}, {"analysis": {"measurements": 2}}],
            # The watch after promotion, time-compressed like the rest of the demo.
            "postPromotion": {"bake": "20s"},
            "analysis": {
                "interval": "3s",
                "window": "12s",
                "minSampleSize": 30,
                "failureLimit": 0,
                "inconclusiveLimit": 20,
            },
        },
    },
}


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(tool_path("kubectl")), *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


async def _load(url: str, stop: asyncio.Event, worker: int, rate: float) -> None:
    import aiohttp

    rng = random.Random(7919 * worker + 1)
    questions = ["What is 12 * 7?", "Reset my password", "Where is my order?", "Refund policy?"]
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            body = {"messages": [{"role": "user", "content": rng.choice(questions)}]}
            headers = {"X-Request-Id": f"{rng.getrandbits(64):x}"}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.post(
                    url + "/v1/chat/completions", json=body, headers=headers
                ) as resp:
                    await resp.read()
            await asyncio.sleep(1 / rate)


def _fmt_params(params: dict[str, str]) -> str:
    model = params.get("model", "").split("/")[-1]
    rest = " ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "model")
    return f"{model} {rest}".strip()


def _table(policy: dict[str, Any], rollouts: dict[str, dict[str, Any]], elapsed: float) -> str:
    st = policy.get("status") or {}
    lines = [
        f"llm-optimizer demo — {elapsed:5.0f} s   policy {st.get('state', '…')}: "
        f"{(st.get('message') or '')[:90]}",
        "",
        f"{'trial':>5}  {'config':<34} {'outcome':<20} {'rollout':<12} {'weight':>6}  "
        f"{'quality':>7}  {'$/req':>9}",
    ]
    for r in st.get("trialRecords") or []:
        ro = rollouts.get(r.get("rollout") or "", {}).get("status") or {}
        metrics = r.get("metrics") or {}
        q, c = metrics.get("quality_score"), metrics.get("cost_per_request_usd")
        outcome = r.get("outcome") or r.get("state", "")
        if r.get("rollout") is None and r.get("number") == 0:
            outcome = f"{outcome} (baseline)" if outcome else "baseline"
        lines.append(
            f"{r['number']:>5}  {_fmt_params(r.get('params') or {}):<34} {outcome:<20} "
            f"{ro.get('phase', '-'):<12} {ro.get('canaryWeight', '-')!s:>6}  "
            f"{(f'{float(q):.3f}' if q else '-'):>7}  {(f'{float(c):.6f}' if c else '-'):>9}"
        )
    if st.get("lastDecision"):
        lines += ["", f"last decision: {st['lastDecision'][:150]}"]
    return "\n".join(lines)


def _report(out: Path, policy: dict[str, Any], history: list[dict[str, Any]], took: float) -> str:
    st = policy.get("status") or {}
    records = st.get("trialRecords") or []
    baseline = records[0] if records else {}
    promoted = next((r for r in records if r.get("outcome") == "Promoted"), None)

    def metric(r: dict[str, Any] | None, name: str) -> float | None:
        v = ((r or {}).get("metrics") or {}).get(name)
        return float(v) if v is not None else None

    lines = ["# llm-optimizer demo report", ""]
    if promoted is None:
        lines += ["No configuration was promoted within the time limit.", ""]
    else:
        lines += [
            f"Promoted **{_fmt_params(promoted['params'])}** (trial {promoted['number']}, "
            f"Rollout `{promoted.get('rollout')}`) after {took:.0f} s, replacing "
            f"**{_fmt_params(baseline.get('params') or {})}**.",
            "",
            "| | starting config | chosen config | change |",
            "|---|---|---|---|",
        ]
        for name, label, fmt in (
            ("cost_per_request_usd", "cost per request (USD)", "{:.6f}"),
            ("quality_score", f"quality (floor {FLOOR})", "{:.3f}"),
            ("latency_p95_seconds", "latency p95 (s)", "{:.2f}"),
            ("error_rate", "error rate", "{:.4f}"),
        ):
            a, b = metric(baseline, name), metric(promoted, name)
            if a is None or b is None:
                continue
            change = f"{(b - a) / a:+.0%}" if a else "-"
            lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {change} |")
        lines.append("")
    rolled = [
        r for r in records if r.get("rollout") and r.get("outcome") in ("RolledBack", "Infeasible")
    ]
    lines += [
        f"Trials: {len(records)} ({len([r for r in records if r.get('rollout')])} with a "
        f"canary Rollout, {len(rolled)} rolled back or judged infeasible). "
        f"Policy state now: {st.get('state')} — {st.get('message', '')}",
        "",
        "| trial | config | outcome | reason | quality | $/request |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        q, c = metric(r, "quality_score"), metric(r, "cost_per_request_usd")
        lines.append(
            f"| {r['number']} | {_fmt_params(r.get('params') or {})} | "
            f"{r.get('outcome') or r.get('state')} | {(r.get('reason') or '')[:80]} | "
            f"{'-' if q is None else f'{q:.3f}'} | {'-' if c is None else f'{c:.6f}'} |"
        )
    lines += [
        "",
        "Version history of the LLMConfig (newest last):",
        "",
        *[
            f"- v{h['version']} {h['model']} {h.get('parameters', {})} from {h['source']}"
            for h in history
        ],
        "",
        "![trials and Pareto front](pareto.png)",
        "",
    ]
    _plot(out / "pareto.png", records)
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def _plot(path: Path, records: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"Promoted": "tab:green", "RolledBack": "tab:red", "Infeasible": "tab:red"}
    points = []
    for r in records:
        m = r.get("metrics") or {}
        if "quality_score" in m and "cost_per_request_usd" in m:
            points.append((float(m["cost_per_request_usd"]), float(m["quality_score"]), r))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for cost, quality, r in points:
        outcome = r.get("outcome") or r.get("state", "")
        ax.scatter(cost, quality, s=60, color=colours.get(outcome, "tab:blue"), zorder=3)
        ax.annotate(
            f"t{r['number']} {_fmt_params(r.get('params') or {})}",
            (cost, quality),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    # Pareto front of the feasible points: cheaper and better is dominant.
    feasible = sorted((c, q) for c, q, _ in points if q >= float(FLOOR))
    front, best = [], -1.0
    for c, q in feasible:
        if q > best:
            front.append((c, q))
            best = q
    if front:
        ax.step(*zip(*front, strict=True), where="post", color="tab:green", alpha=0.5,
                label="Pareto front (feasible)")  # fmt: skip
    ax.axhline(float(FLOOR), color="grey", linestyle="--", label=f"quality floor {FLOOR}")
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.1)
    ax.set_xlabel("cost per request (USD, log scale)")
    ax.set_ylabel("quality score")
    ax.set_title("Trials: green promoted, red rolled back / infeasible, blue other")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def _run(args: argparse.Namespace, out: Path, plane: ControlPlane) -> int:  # noqa: C901, PLR0912, PLR0915  the demo script, top to bottom
    from ..gateway.server import Gateway, GatewaySettings, server_options
    from ..providers.simulator import SimulatorProvider, load_fleet

    started = time.monotonic()
    print("starting the local control plane (etcd + kube-apiserver v1.20.2) …", flush=True)
    plane.start()
    kc = plane.kubeconfig
    os.environ["KUBECONFIG"] = str(kc)  # the gateway watches its ConfigMap with it
    _kubectl(kc, "apply", "-f", str(REPO / "crds"))
    _kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    prom = LocalPrometheus(plane.workdir / "prometheus", [], interval="1s")
    print("starting Prometheus and the operator …", flush=True)
    prom.start()
    operator = None
    runner = None
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        operator, _ = start_operator(
            kc,
            out / "operator.log",
            env={
                "LLMOPT_PROMETHEUS_URL": prom.url,
                "LLMOPT_ROLLOUT_TICK": "1",
                "LLMOPT_POLICY_TICK": "1",
            },
        )
        _kubectl(kc, "create", "namespace", NAMESPACE)
        _kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump(LLMCONFIG))
        gateway = Gateway(
            GatewaySettings(
                configmap=f"{NAMESPACE}/support-bot-llm-config",
                providers={"simulator": SimulatorProvider(load_fleet(), time_scale=0.02)},
            )
        )
        from aiohttp import web

        runner = web.AppRunner(gateway.app(), **server_options(gateway.s))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        prom.set_targets([f"127.0.0.1:{port}"])
        print(f"gateway on {url} in front of the simulator fleet; driving load …", flush=True)
        tasks = [asyncio.create_task(_load(url, stop, w, 20.0)) for w in range(3)]
        _kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump(POLICY))
        print(
            f"applied LLMConfig support-bot (sim-large) and OptimizationPolicy "
            f"support-bot-cost (cheapest with quality >= {FLOOR})\n",
            flush=True,
        )
        api = config.new_client_from_config(config_file=str(kc))
        custom = client.CustomObjectsApi(api)
        loop_started = time.monotonic()
        tty = sys.stdout.isatty()
        shown = ""
        policy: dict[str, Any] = {}
        promoted = False
        while time.monotonic() - loop_started < args.timeout:
            policy = custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "optimizationpolicies", "support-bot-cost"
            )
            items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts")
            rollouts = {r["metadata"]["name"]: r for r in items["items"]}
            text = _table(policy, rollouts, time.monotonic() - started)
            body = text.split("\n", 1)[1]
            if tty:
                print("\033[H\033[J" + text, flush=True)
            elif body != shown:
                print(text + "\n", flush=True)
            shown = body
            records = (policy.get("status") or {}).get("trialRecords") or []
            if any(r.get("outcome") == "Promoted" for r in records):
                promoted = True
                break
            st = policy.get("status") or {}
            if st.get("breakerOpenUntil") or (st.get("message") or "").startswith("budget spent"):
                break  # the policy has stopped proposing: report what it found
            if operator.poll() is not None:
                raise ControlPlaneError("the operator exited; see out/demo/operator.log")
            await asyncio.sleep(1.5)
        took = time.monotonic() - started
        llmc = custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "llmconfigs", "support-bot"
        )
        report = _report(out, policy, (llmc.get("status") or {}).get("history") or [], took)
        print("\n" + report)
        print(f"wrote {out / 'report.md'} and {out / 'pareto.png'}")
        if not promoted:
            print(f"no promotion within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        if args.wait == "yes" or (args.wait == "auto" and sys.stdin.isatty()):
            print(
                f"Still running. In another shell:\n  export KUBECONFIG={kc}\n"
                f"  {tool_path('kubectl')} get llmopt -n {NAMESPACE}\nCtrl-C stops everything.",
                flush=True,
            )
            while operator.poll() is None:
                await asyncio.sleep(1)
        return 0
    finally:
        # Processes first (nothing may outlive the demo), then in-process parts, each
        # with a deadline so a stuck connection cannot hold the exit.
        if operator is not None:
            stop_pids([operator.pid])
        prom.stop()
        stop.set()
        for t in tasks:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        if runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.cleanup(), 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--wait",
        choices=["auto", "yes", "no"],
        default="no",
        help="keep everything running after the report until Ctrl-C (auto: on a terminal)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for a promotion"
    )
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=Path(tempfile.mkdtemp(prefix="llmopt-demo-")))
    try:
        return asyncio.run(_run(args, out, plane))
    except ControlPlaneError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped; nothing is left running")
        return 130
    finally:
        plane.stop()
        shutil.rmtree(plane.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
