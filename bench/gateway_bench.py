"""``make bench-gateway``: what the gateway adds to each request, next to LiteLLM's proxy.

One run, one machine, the same upstream: the project's simulator server with a
fixed-latency model (``bench-fixed``: 20 ms, 50 tokens). The same load
generator sends the same open-loop schedule (uniform arrivals) to

* the simulator directly (the baseline),
* our gateway in front of it (openai provider, default evaluators, metrics on),
* the LiteLLM proxy in front of it (PyPI ``litellm[proxy]``, its own venv),

at 200 and 500 requests/second. Added latency is the difference of client-side
percentiles to the direct run. Then the gateway alone is ramped to find the
highest rate with < 1% errors. Gateway CPU (cores) and peak RSS (VmHWM) are
read from /proc. Results: bench/results/gateway.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from optimizer_operator.loadgen import LoadGenerator
from optimizer_operator.local.cluster import _die_with_parent, free_port, stop_pids

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MODEL = "bench-fixed"
PROMPT = ["Benchmark prompt: reply with the usual fixed answer."]


class Server:
    def __init__(
        self,
        name: str,
        argv: list[str],
        health: str,
        env: dict[str, str] | None = None,
        workdir: Path = RESULTS,
    ) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{name} not healthy in time: {self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        stop_pids([self.proc.pid])


def run_load(url: str, rate: float, seconds: float, timeout: float = 5.0) -> dict[str, Any]:
    gen = LoadGenerator(url, PROMPT, model=MODEL, timeout=timeout, seed=1, max_in_flight=20000)
    summary = asyncio.run(gen.run(rate=rate, duration=seconds, arrivals="uniform"))
    ok = np.array([o.latency for o in summary.outcomes if o.status == 200]) * 1000
    total = len(summary.outcomes)
    errors = total - len(ok)
    return {
        "offered_rps": rate,
        "achieved_rps": total / summary.duration if summary.duration else 0.0,
        "requests": total,
        "errors": errors,
        "error_rate": errors / total if total else 1.0,
        "p50_ms": float(np.percentile(ok, 50)) if len(ok) else float("nan"),
        "p90_ms": float(np.percentile(ok, 90)) if len(ok) else float("nan"),
        "p99_ms": float(np.percentile(ok, 99)) if len(ok) else float("nan"),
    }


def measure(
    target: str, url: str, rate: float, seconds: float, server: Server | None
) -> dict[str, Any]:
    run_load(url, rate, 2.0)  # warm-up: connections, caches, JIT-free but allocator warm
    cpu0 = server.cpu_seconds() if server else 0.0
    started = time.monotonic()
    result = run_load(url, rate, seconds)
    wall = time.monotonic() - started
    if server is not None:
        result["cpu_cores"] = (server.cpu_seconds() - cpu0) / wall
        result["peak_rss_mb"] = server.peak_rss_mb()
    result["target"] = target
    print(
        f"  {target:<8} {rate:>5.0f} rps: p50 {result['p50_ms']:.2f} ms  "
        f"p99 {result['p99_ms']:.2f} ms  errors {result['error_rate'] * 100:.2f}%  "
        f"achieved {result['achieved_rps']:.0f} rps",
        flush=True,
    )
    return result


def _two_variants(path: Path, sim_port: int) -> Path:
    """A stable and a candidate, half the traffic each, both the fixed model."""
    endpoint = {"baseUrl": f"http://127.0.0.1:{sim_port}/v1"}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "optimizer.llmops.dev/v1alpha1",
                "kind": "VariantSet",
                "llmConfig": "bench",
                "namespace": "bench",
                "variants": [
                    {"id": vid, "role": role, "hash": vid, "weight": 5000, "provider": "openai",
                     "model": MODEL, "parameters": {}, "endpoint": endpoint}
                    for vid, role in (("v1", "stable"), ("c1", "candidate"))
                ],
            }
        )
    )  # fmt: skip
    return path


def _back_to_back(
    py: list[str],
    gateways: list[tuple[str, Path, str]],
    rates: list[float],
    seconds: float,
    repeats: int,
) -> dict[str, Any]:
    """Two gateways (name, variants file, evaluators) on the same upstream, measured back
    to back at each rate; what the second adds to the first: the median of the
    differences over the repeats, as for the gateway against direct."""
    servers: dict[str, tuple[Server, str]] = {}
    runs: list[dict[str, Any]] = []
    try:
        for name, variants, evaluators in gateways:
            port = free_port()
            server = Server(
                name.replace(" ", "-"),
                [*py, "gateway", "--config", str(variants), "--host", "127.0.0.1",
                 "--port", str(port), "--evaluators", evaluators],
                f"http://127.0.0.1:{port}/readyz",
                env={"OPENAI_API_KEY": "sk-bench"},
            )  # fmt: skip
            servers[name] = (server, f"http://127.0.0.1:{port}")
        for rate in rates:
            for rep in range(repeats):
                for name, (server, url) in servers.items():
                    r = measure(name, url, rate, seconds, server)
                    r["repeat"] = rep
                    runs.append(r)
        peaks = {name: server.peak_rss_mb() for name, (server, _) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.stop()
    off_name, on_name = gateways[0][0], gateways[1][0]
    out: dict[str, Any] = {"runs": runs, "peak_rss_mb": peaks}
    for rate in rates:
        diffs = {
            key: [
                on[key] - off[key]
                for off in runs
                for on in runs
                if off["target"] == off_name and on["target"] == on_name
                and off["offered_rps"] == on["offered_rps"] == rate
                and off["repeat"] == on["repeat"]
            ]
            for key in ("p50_ms", "p99_ms")
        }  # fmt: skip
        out[f"{int(rate)}rps"] = {
            "added_p50_ms": float(np.median(diffs["p50_ms"])),
            "added_p99_ms": float(np.median(diffs["p99_ms"])),
        }
    return out


def judging_overhead(
    py: list[str], sim_port: int, rates: list[float], seconds: float, repeats: int
) -> dict[str, Any]:
    """What pairwise judging at 10% of the candidate's requests adds on the user's path:
    two gateways with the same stable + candidate split, one judging (the simulator's
    judge model, in the background), measured back to back at each rate."""
    variants = _two_variants(RESULTS / "bench-variants-two.json", sim_port)
    endpoint = {"baseUrl": f"http://127.0.0.1:{sim_port}/v1"}
    options = {"provider": "openai", "model": "sim-judge", "endpoint": endpoint,
               "maxUsdPerHour": 1000}  # fmt: skip
    judged = json.dumps([{"name": "pairwise", "rate": 0.1, "options": options}])
    return _back_to_back(
        py,
        [("judging off", variants, "ground_truth=1"), ("judging on", variants, judged)],
        rates, seconds, repeats,
    )  # fmt: skip


def _router_variants(path: Path, sim_port: int) -> tuple[Path, Path]:
    """One stable variant, plain; and the same as a prompt router between two copies of
    the fixed model (so the upstream is the same and only the routing differs). The
    router is trained on GSM8K's prompts when ../shared/data has them (its real size:
    some 30,000 weights), else on a synthetic set."""
    from optimizer_operator.routers import dataset as datasets
    from optimizer_operator.routers.model import Router

    gsm8k = ROOT.parent.parent / "shared" / "data" / "gsm8k_responses.csv"
    if gsm8k.exists():
        ds = datasets.load(gsm8k)
        cheap = min(ds.models, key=ds.accuracy)
        router = Router.train("prompt", ds.prompts, ds.correct[cheap], c=1.0)
    else:
        prompts = [f"what is {a} plus {b}" for a in range(40) for b in range(5)]
        router = Router.train("prompt", prompts, [i % 3 != 0 for i in range(len(prompts))],
                              c=1.0)  # fmt: skip
    endpoint = {"baseUrl": f"http://127.0.0.1:{sim_port}/v1"}
    plain = {"id": "v1", "role": "stable", "hash": "v1", "weight": 10000, "provider": "openai",
             "model": MODEL, "parameters": {}, "endpoint": endpoint}  # fmt: skip
    routed = {**plain, "router": {"mode": "prompt", "threshold": "0.5", "artifact": router.dumps(),
                                  "strong": {"provider": "openai", "model": MODEL,
                                             "endpoint": endpoint}}}  # fmt: skip
    out = []
    for name, variant in (("plain", plain), ("router", routed)):
        file = path.with_name(f"bench-variants-{name}.json")
        file.write_text(json.dumps({"apiVersion": "optimizer.llmops.dev/v1alpha1",
                                    "kind": "VariantSet", "llmConfig": "bench",
                                    "namespace": "bench", "variants": [variant]}))  # fmt: skip
        out.append(file)
    return out[0], out[1]


def router_overhead(
    py: list[str], sim_port: int, rates: list[float], seconds: float, repeats: int
) -> dict[str, Any]:
    """What a router variant adds to a request: two gateways, one plain and one routing
    each request by a trained prompt router (scoring the prompt), measured back to back."""
    plain, routed = _router_variants(RESULTS / "bench-variants.json", sim_port)
    out = _back_to_back(
        py, [("plain", plain, "length=1"), ("router", routed, "length=1")], rates, seconds,
        repeats,
    )  # fmt: skip
    out["measured_alone"] = True
    return out


def main() -> int:  # noqa: C901, PLR0912, PLR0915  a benchmark script, read top to bottom
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument(
        "--rates",
        default="50,200,500",
        help="50 rps shows per-request overhead below every proxy's saturation",
    )
    parser.add_argument("--ramp", default="500,1000,1500,2000,2500,3000,4000,5000")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="alternating direct/gateway runs per rate; the median difference "
        "is reported, since one run's difference is within noise",
    )
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--judging-rates", default="50,200", help="rates of the pairwise-judging comparison"
    )
    parser.add_argument(
        "--only-judging",
        action="store_true",
        help="re-measure only the pairwise-judging comparison, into the existing report",
    )
    parser.add_argument(
        "--only-router",
        action="store_true",
        help="measure only the router variant against a plain one, into the existing report",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in args.rates.split(",")]
    py = [sys.executable, "-m", "optimizer_operator"]

    sim_port, gw_port = free_port(), free_port()
    sim = Server(
        "simulator",
        [*py, "simulator", "--port", str(sim_port), "--time-scale", "1"],
        f"http://127.0.0.1:{sim_port}/healthz",
    )
    if args.only_router:
        try:
            routing = router_overhead(
                py, sim_port, [float(r) for r in args.judging_rates.split(",")],
                args.seconds, args.repeats,
            )  # fmt: skip
        finally:
            sim.stop()
        report = json.loads((RESULTS / "gateway.json").read_text())
        report["router"] = routing
        (RESULTS / "gateway.json").write_text(json.dumps(report, indent=2) + "\n")
        rerender()
        return 0
    if args.only_judging:
        try:
            judging = judging_overhead(
                py, sim_port, [float(r) for r in args.judging_rates.split(",")],
                args.seconds, args.repeats,
            )  # fmt: skip
        finally:
            sim.stop()
        report = json.loads((RESULTS / "gateway.json").read_text())
        report["judging"] = {**judging, "measured_alone": True}
        (RESULTS / "gateway.json").write_text(json.dumps(report, indent=2) + "\n")
        rerender()
        return 0
    variants = RESULTS / "bench-variants.json"
    variants.write_text(
        json.dumps(
            {
                "apiVersion": "optimizer.llmops.dev/v1alpha1",
                "kind": "VariantSet",
                "llmConfig": "bench",
                "namespace": "bench",
                "variants": [
                    {
                        "id": "v1",
                        "role": "stable",
                        "hash": "bench",
                        "weight": 10000,
                        "provider": "openai",
                        "model": MODEL,
                        "parameters": {},
                        "endpoint": {"baseUrl": f"http://127.0.0.1:{sim_port}/v1"},
                    }
                ],
            }
        )
    )
    gateway = Server(
        "gateway",
        [*py, "gateway", "--config", str(variants), "--host", "127.0.0.1", "--port", str(gw_port)],
        f"http://127.0.0.1:{gw_port}/readyz",
        env={"OPENAI_API_KEY": "sk-bench"},
    )
    litellm: Server | None = None
    litellm_url = None
    if not args.no_litellm:
        if not LITELLM.exists():
            print(f"error: {LITELLM} missing; `make bench-gateway` installs it", file=sys.stderr)
            return 2
        lport = free_port()
        cfg = RESULTS / "litellm-config.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "model_list": [
                        {
                            "model_name": MODEL,
                            "litellm_params": {
                                "model": f"openai/{MODEL}",
                                "api_base": f"http://127.0.0.1:{sim_port}/v1",
                                "api_key": "sk-bench",
                            },
                        }
                    ],
                    "litellm_settings": {"telemetry": False, "drop_params": True},
                }
            )
        )
        litellm = Server(
            "litellm",
            [
                str(LITELLM),
                "--config",
                str(cfg),
                "--host",
                "127.0.0.1",
                "--port",
                str(lport),
                "--num_workers",
                "1",
            ],
            f"http://127.0.0.1:{lport}/health/liveliness",
            # Our gateway does no client auth (it is a sidecar), so LiteLLM runs
            # without a master key too, through its local-development switch.
            env={
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "DISABLE_SCHEMA_UPDATE": "true",
                "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            },
        )
        litellm_url = f"http://127.0.0.1:{lport}"

    runs: list[dict[str, Any]] = []
    try:
        for rate in rates:
            print(f"rate {rate:.0f} rps", flush=True)
            for rep in range(args.repeats):
                d = measure("direct", f"http://127.0.0.1:{sim_port}", rate, args.seconds, None)
                g = measure("gateway", f"http://127.0.0.1:{gw_port}", rate, args.seconds, gateway)
                d["repeat"] = g["repeat"] = rep
                runs += [d, g]
            if litellm is not None and litellm_url is not None:
                runs.append(measure("litellm", litellm_url, rate, args.seconds, litellm))
        # Peak RSS over the rate runs (the figure), before the ramp overloads it.
        gateway_peak = gateway.peak_rss_mb()
        print("ramp (gateway)", flush=True)
        ramp = []
        max_ok = 0.0
        ramp_rates = [float(r) for r in args.ramp.split(",")]
        for rate in ramp_rates:
            r = measure("gateway", f"http://127.0.0.1:{gw_port}", rate, 8.0, gateway)
            ramp.append(r)
            if r["error_rate"] < 0.01 and r["achieved_rps"] >= 0.95 * rate:
                max_ok = rate
            else:
                break
        gateway_peak_after_ramp = gateway.peak_rss_mb()
        gateway.stop()
        print("pairwise judging on 10% of the candidate's requests, off vs on", flush=True)
        judging = judging_overhead(
            py,
            sim_port,
            [float(r) for r in args.judging_rates.split(",")],
            args.seconds,
            args.repeats,
        )
        print("a router variant against a plain one", flush=True)
        routing = router_overhead(
            py, sim_port, [float(r) for r in args.judging_rates.split(",")],
            args.seconds, args.repeats,
        )  # fmt: skip
        routing["measured_alone"] = False
    finally:
        for server in (gateway, litellm, sim):
            if server is not None:
                server.stop()

    def at(target: str, rate: float) -> dict[str, Any]:
        return next(r for r in runs if r["target"] == target and r["offered_rps"] == rate)

    def added(rate: float, key: str) -> float:
        """Median over repeats of gateway minus direct, each pair measured back to back."""
        pairs = [
            (r, g)
            for r in runs
            for g in runs
            if r["target"] == "direct"
            and g["target"] == "gateway"
            and r["offered_rps"] == g["offered_rps"] == rate
            and r.get("repeat") == g.get("repeat")
        ]
        return float(np.median([g[key] - r[key] for r, g in pairs]))

    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "upstream": f"simulator {MODEL}: 20 ms fixed, 50 tokens",
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "runs": runs,
        "ramp": ramp,
        "judging": judging,
        "router": routing,
    }
    for rate in rates:
        d = at("direct", rate)
        gateway_runs = [r for r in runs if r["target"] == "gateway" and r["offered_rps"] == rate]
        key = f"{int(rate)}rps"
        report[key] = {
            "added_p50_ms": added(rate, "p50_ms"),
            "added_p99_ms": added(rate, "p99_ms"),
            "added_p50_ms_each_repeat": [
                g["p50_ms"] - r["p50_ms"]
                for r, g in zip(
                    [x for x in runs if x["target"] == "direct" and x["offered_rps"] == rate],
                    gateway_runs,
                    strict=True,
                )
            ],
            "gateway_cpu_cores": float(np.median([g["cpu_cores"] for g in gateway_runs])),
        }
        if litellm is not None:
            ll = at("litellm", rate)
            report[key].update(
                {
                    "litellm_added_p50_ms": ll["p50_ms"] - d["p50_ms"],
                    "litellm_added_p99_ms": ll["p99_ms"] - d["p99_ms"],
                    "litellm_cpu_cores": ll["cpu_cores"],
                }
            )
    top = report[f"{int(max(rates))}rps"]
    report.update(
        {
            "added_p50_ms": top["added_p50_ms"],
            "added_p99_ms": top["added_p99_ms"],
            "peak_rss_mb": gateway_peak,
            "peak_rss_mb_after_ramp": gateway_peak_after_ramp,
            "max_rps_under_1pct_errors": max_ok,
            "ramp_top_reached_without_failure": max_ok == ramp_rates[-1],
            "litellm_added_p50_ms": top.get("litellm_added_p50_ms"),
            "litellm_added_p99_ms": top.get("litellm_added_p99_ms"),
        }
    )
    if top.get("litellm_added_p50_ms"):
        report["litellm_to_gateway_added_p50_ratio"] = top["litellm_added_p50_ms"] / max(
            top["added_p50_ms"], 1e-9
        )
        low = report[f"{int(min(rates))}rps"]
        report["litellm_to_gateway_added_p50_ratio_at_lowest_rate"] = low[
            "litellm_added_p50_ms"
        ] / max(low["added_p50_ms"], 1e-9)
    (RESULTS / "gateway.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "gateway.md").write_text(render_markdown(report, rates))
    print(f"wrote {RESULTS / 'gateway.md'} and {RESULTS / 'gateway.json'}")
    return 0


def _router_lines(routing: dict[str, Any] | None) -> list[str]:
    """The router variant's section of the report (none before it was measured)."""
    if not routing:
        return []
    lines: list[str] = []
    lines += [
        "",
        "## A router variant",
        "",
        "Two gateways on the same upstream: one variant, plain; the same variant as a "
        "prompt router (a trained router scores each prompt and picks the cheap or the "
        "strong configuration, here two copies of the fixed model). Added = router minus "
        "plain, median over the back-to-back repeats"
        + (
            "; measured in a run of its own (`--only-router`)"
            if routing.get("measured_alone")
            else ""
        )
        + ". Target: at most 2 ms at the median.",
        "",
        "| rate | added p50 ms | added p99 ms |",
        "|---:|---:|---:|",
    ]
    for key, row in routing.items():
        if key.endswith("rps"):
            lines.append(
                f"| {key.removesuffix('rps')} | {row['added_p50_ms']:.2f} | "
                f"{row['added_p99_ms']:.2f} |"
            )
    peaks = routing.get("peak_rss_mb")
    if peaks:
        lines += ["", "Peak RSS: " + ", ".join(f"{n} {mb:.0f} MB" for n, mb in peaks.items())
                  + "."]  # fmt: skip
    return lines


def render_markdown(report: dict[str, Any], rates: list[float]) -> str:
    lines = [
        "# Gateway overhead benchmark",
        "",
        f"Generated by `make bench-gateway` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"; {report['machine']['cpus']} CPUs, Python {report['machine']['python']}.",
        f"Upstream: {report['upstream']}. Open-loop uniform arrivals, "
        f"{report['seconds_per_run']:.0f} s per run after a 2 s warm-up; the load generator, "
        "the upstream and the proxy under test share the machine's 2 cores.",
        "",
        "## Added latency over calling the simulator directly",
        "",
        "| rate | target | p50 ms | p99 ms | added p50 ms | added p99 ms | proxy CPU cores | "
        "errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in rates:
        for r in report["runs"]:
            if r["offered_rps"] != rate:
                continue
            direct = next(
                x
                for x in report["runs"]
                if x["target"] == "direct"
                and x["offered_rps"] == rate
                and x.get("repeat", 0) == r.get("repeat", 0)
            )
            added50 = r["p50_ms"] - direct["p50_ms"] if r["target"] != "direct" else 0.0
            added99 = r["p99_ms"] - direct["p99_ms"] if r["target"] != "direct" else 0.0
            cpu = f"{r['cpu_cores']:.2f}" if "cpu_cores" in r else "-"
            target = r["target"] + (f" #{r['repeat'] + 1}" if "repeat" in r else "")
            lines.append(
                f"| {rate:.0f} | {target} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {added50:.2f} | {added99:.2f} | {cpu} | "
                f"{r['error_rate'] * 100:.2f}% |"
            )
    lines += [
        "",
        "LiteLLM runs after each rate's direct/gateway repeats, compared with the first "
        "direct run. Gateway rows are compared with the direct run just before them.",
        "",
        f"## Summary ({int(max(rates))} rps)",
        "",
        f"- gateway added p50: **{report['added_p50_ms']:.2f} ms**, added p99: "
        f"**{report['added_p99_ms']:.2f} ms** (median over {report['repeats']} "
        "back-to-back repeats; targets: <= 1 ms, <= 5 ms). Differences below about 1 ms are within "
        "run-to-run noise on this shared machine, which is why a p99 can come out negative.",
        f"- gateway peak RSS over the rate runs: **{report['peak_rss_mb']:.1f} MB** "
        f"(target: <= 150 MB); after the overload ramp: "
        f"{report.get('peak_rss_mb_after_ramp', float('nan')):.1f} MB "
        "(in-flight requests are capped by --max-in-flight, default 2048)",
        "- highest offered rate with < 1% errors (and >= 95% of it achieved): "
        f"**{report['max_rps_under_1pct_errors']:.0f} rps**"
        + (
            " (the top of the ramp: no failing rate was found; beyond it the load generator "
            "itself, on the same 2 cores, is the limit)"
            if report["ramp_top_reached_without_failure"]
            else ""
        ),
    ]
    if report.get("litellm_added_p50_ms") is not None:
        lines += [
            f"- LiteLLM proxy added p50: **{report['litellm_added_p50_ms']:.2f} ms**, added p99: "
            f"**{report['litellm_added_p99_ms']:.2f} ms**",
            f"- LiteLLM's added p50 / ours: **{report['litellm_to_gateway_added_p50_ratio']:.1f}x**"
            " (target: >= 5x). At this rate LiteLLM (one worker, as our gateway is one "
            "process) is past its saturation, so its figure is mostly queueing; at "
            f"{int(min(rates))} rps, below every proxy's saturation, the ratio is "
            f"**{report['litellm_to_gateway_added_p50_ratio_at_lowest_rate']:.1f}x**.",
        ]
    judging = report.get("judging")
    if judging:
        lines += [
            "",
            "## Pairwise judging on 10% of a candidate's requests",
            "",
            "Two gateways with the same stable + candidate split (half each); one judges 10% of "
            "the candidate's answers against stable's (a shadow call to stable and two judge "
            "calls to the simulator's judge model, after the response went out, and the "
            "answers' similarity, gateway.similarity). Added = judging on minus off, median "
            "over the back-to-back repeats."
            + (
                " Measured in a run of its own (`--only-judging`), after the rest of this report."
                if judging.get("measured_alone")
                else ""
            ),
            "",
            "| rate | added p50 ms | added p99 ms |",
            "|---:|---:|---:|",
        ]
        for key, row in judging.items():
            if key.endswith("rps"):
                lines.append(
                    f"| {key.removesuffix('rps')} | {row['added_p50_ms']:.2f} | "
                    f"{row['added_p99_ms']:.2f} |"
                )
        peaks = judging.get("peak_rss_mb")
        if peaks:
            lines += [
                "",
                "Peak RSS over these runs: "
                + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks.items())
                + ".",
            ]
    lines += _router_lines(report.get("router"))
    lines += [
        "",
        "## Ramp (gateway)",
        "",
        "| offered rps | achieved rps | p50 ms | p99 ms | errors | CPU cores |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["ramp"]:
        lines.append(
            f"| {r['offered_rps']:.0f} | {r['achieved_rps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['error_rate'] * 100:.2f}% | {r['cpu_cores']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def rerender() -> None:
    """Rewrite gateway.md from gateway.json (after a wording change, without re-measuring)."""
    report = json.loads((RESULTS / "gateway.json").read_text())
    rates = sorted({r["offered_rps"] for r in report["runs"]})
    (RESULTS / "gateway.md").write_text(render_markdown(report, rates))


if __name__ == "__main__":
    if sys.argv[1:] == ["--rerender"]:
        rerender()
        sys.exit(0)
    sys.exit(main())
