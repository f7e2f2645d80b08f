"""``make bench-scale``: one operator with 1,000 Rollouts and 200 policies, then the same
load split across two operator processes by namespace.

The local control plane (etcd + kube-apiserver) runs on this machine beside the operator,
so both share its cores, as a small cluster's control-plane node would not. Objects:
10 namespaces x (100 LLMConfigs, 100 Rollouts standing at a pause, 20 policies in
recommend mode). The operator runs with its default timers (a Rollout ticks every 10 s, a
policy cycles every 15 s, drift repair every 30 s), so the steady load is about 113
reconciles a second.

Measured, per setup:

* reconcile duration p50/p99: the operator's own histogram
  ``llmopt_operator_reconcile_duration_seconds`` (one handler run, as controller-runtime's
  ``reconcile_time_seconds``), quantiles interpolated within buckets, over the steady window;
* peak RSS of each operator process, sampled every 0.5 s from its start (the start-up
  storm, where every object is resumed, included);
* start-up: seconds from the operator's start until every object has been handled;
* reconcile rate achieved against the rate the timers ask for;
* action latency: a person's ``promote`` on a paused Rollout until its status says
  Promoted (timer wait + reconcile), for 40 Rollouts spread over the window.

Setups: one operator; two operators splitting the namespaces; one operator with kopf's
unbounded API connection pool (``LLMOPT_API_CONNECTIONS=0``); and one operator with the
real dependencies: a real Prometheus scraping series for every variant (the gateway's own
metric families, one synthetic request a second per variant, so every query the operator
makes has data to read), PostgreSQL as the history store, the policies in mode ``auto``
and the Rollouts in an analysis step that measures every 30 s. Each setup gets a control
plane and objects of its own, so every one starts from objects no operator has handled.
``--only NAME`` runs some of them.

Results: bench/results/scale.{md,json}.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import json
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config
from prometheus_client.utils import floatToGoString

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.gateway.metrics import DURATION_BUCKETS, QUALITY_BUCKETS
from optimizer_operator.local.cluster import ControlPlane, free_port, start_operator, stop_pids

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TARGET_P99_S, TARGET_RSS_MB = 1.0, 300.0


@dataclass
class Load:
    namespaces: int = 10
    configs: int = 100  # LLMConfigs and Rollouts per namespace
    policies: int = 20  # per namespace
    window_s: float = 60.0
    promotions: int = 40
    real: bool = False  # Rollouts measuring (Prometheus), policies in mode auto (PostgreSQL)

    def names(self) -> list[str]:
        return [f"scale-{i}" for i in range(self.namespaces)]


def _body(kind: str, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def populate(api: client.ApiClient, load: Load) -> float:
    """Create every object (before any operator runs); returns seconds taken."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    started = time.monotonic()
    for ns in load.names():
        core.create_namespace({"metadata": {"name": ns}})
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    for ns in load.names():
        for i in range(load.configs):
            jobs.append(
                (
                    ns,
                    "llmconfigs",
                    _body(
                        "LLMConfig", ns, f"c-{i}", {"provider": "simulator", "model": "sim-large"}
                    ),
                )
            )
            jobs.append(
                (
                    ns,
                    "rollouts",
                    _body(
                        "Rollout",
                        ns,
                        f"r-{i}",
                        {
                            "targetRef": {"name": f"c-{i}"},
                            "candidate": {"provider": "simulator", "model": "sim-small"},
                            "steps": [{"setWeight": 10}, _second_step(load)],
                            **({"analysis": {"interval": "30s"}} if load.real else {}),
                        },
                    ),
                )
            )
        for i in range(load.policies):
            jobs.append(
                (
                    ns,
                    "optimizationpolicies",
                    _body(
                        "OptimizationPolicy",
                        ns,
                        f"p-{i}",
                        {
                            "targetRef": {"name": f"c-{i}"},
                            "mode": "auto" if load.real else "recommend",
                            "objectives": [
                                {"metric": "cost_per_request_usd", "direction": "minimize"}
                            ],
                            "searchSpace": {
                                "models": [
                                    {"provider": "simulator", "model": "sim-small"},
                                    {"provider": "simulator", "model": "sim-medium"},
                                ]
                            },
                            "schedule": {"triggers": [{"type": "interval", "every": "1h"}]},
                        },
                    ),
                )
            )

    def create(job: tuple[str, str, dict[str, Any]]) -> None:
        ns, plural, body = job
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, jobs))
    return time.monotonic() - started


def _second_step(load: Load) -> dict[str, Any]:
    """Paused at 10%; with the real dependencies, measuring at 10% instead (an analysis
    step that does not end in the window, so every tick reads Prometheus on its interval)."""
    return {"analysis": {"measurements": 1000}} if load.real else {"pause": {}}


class SyntheticTraffic:
    """Every variant's series as the gateway exports them — its metric families, label
    names and buckets (gateway/metrics.py), one request a second per variant — served on
    a loopback port for a real Prometheus to scrape. Fewer series than a real gateway
    (no token or TTFT histograms, one evaluator), all the ones the operator queries.
    Rendered by hand, not by prometheus_client: its exposition of these 150,000 lines
    took the harness about half a core, which belongs to the system under test."""

    def __init__(self, load: Load) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from optimizer_operator.api.llmconfig import ModelConfig
        from optimizer_operator.api.variants import canary_variant_id

        canary = canary_variant_id(
            ModelConfig.model_validate(
                {"provider": "simulator", "model": "sim-small"}
            ).config_hash()
        )
        self.variants = [
            (ns, f"c-{i}", i, variant, model)
            for ns in load.names()
            for i in range(load.configs)
            for variant, model in (("v1", "sim-large"), (canary, "sim-small"))
        ]
        self._durations = Buckets(len(self.variants), DURATION_BUCKETS)
        self._quality = Buckets(len(self.variants), QUALITY_BUCKETS)
        self._started = time.monotonic()
        self._counted = 0  # seconds of traffic in the series so far
        self._render = threading.Lock()
        traffic = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = traffic.scrape()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def scrape(self) -> bytes:
        """The series as of now: every second's requests since the last scrape added
        (one per variant), then rendered, once per scrape."""
        with self._render:
            due = int(time.monotonic() - self._started)
            for n in range(self._counted + 1, due + 1):
                for j, (_, _, i, _, _) in enumerate(self.variants):
                    self._durations.observe(j, 0.8 + 0.4 * ((n * 7 + i) % 10) / 10)
                    # The same scores for stable and canary: neither is rolled back on
                    # evidence, so every Rollout keeps measuring through the window.
                    self._quality.observe(j, 0.8 + 0.05 * ((n + i) % 3))
            self._counted = max(self._counted, due)
            return self._exposition()

    def _exposition(self) -> bytes:
        n, out = self._counted, []
        labels = [
            f'llm_config_namespace="{ns}",llm_config="{cfg}",variant="{variant}"'
            for ns, cfg, _, variant, _ in self.variants
        ]
        out.append("# TYPE llmopt_requests_total counter")
        out += [f'llmopt_requests_total{{{v},status="200"}} {n}' for v in labels]
        out.append("# TYPE llmopt_cost_usd_total counter")
        out += [
            f'llmopt_cost_usd_total{{{v},gen_ai_request_model="{m[4]}"}} {n * 0.002:.6f}'
            for v, m in zip(labels, self.variants, strict=True)
        ]
        genai = [
            f'{v},gen_ai_operation_name="chat",gen_ai_provider_name="simulator",'
            f'gen_ai_request_model="{m[4]}",error_type=""'
            for v, m in zip(labels, self.variants, strict=True)
        ]
        out += self._durations.lines("gen_ai_client_operation_duration_seconds", genai)
        out += self._quality.lines(
            "llmopt_quality_score", [f'{v},evaluator="ground_truth"' for v in labels]
        )
        return ("\n".join(out) + "\n").encode()

    def stop(self) -> None:
        self.server.shutdown()


class Buckets:
    """Histograms of many series at once: per-bucket counts, sums, counts."""

    def __init__(self, series: int, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.les = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.counts = [[0] * (len(bounds) + 1) for _ in range(series)]
        self.sums = [0.0] * series

    def observe(self, j: int, value: float) -> None:
        self.counts[j][bisect.bisect_left(self.bounds, value)] += 1
        self.sums[j] += value

    def lines(self, family: str, labels: list[str]) -> list[str]:
        out = [f"# TYPE {family} histogram"]
        for j, v in enumerate(labels):
            total = 0
            for le, c in zip(self.les, self.counts[j], strict=True):
                total += c
                out.append(f'{family}_bucket{{{v},le="{le}"}} {total}')
            out.append(f"{family}_sum{{{v}}} {self.sums[j]:.6f}")
            out.append(f"{family}_count{{{v}}} {total}")
        return out


@contextlib.contextmanager
def dependencies(work: Path, load: Load) -> Iterator[dict[str, str]]:
    """Prometheus scraping the synthetic series and PostgreSQL; the operator's env."""
    from optimizer_operator.local.postgres import LocalPostgres
    from optimizer_operator.local.prometheus import LocalPrometheus

    traffic = SyntheticTraffic(load)
    prometheus = LocalPrometheus(workdir=work / "prometheus", targets=[], interval="10s")
    postgres = LocalPostgres()
    try:
        prometheus.start()
        prometheus.set_targets([traffic.target])
        postgres.start()
        time.sleep(25)  # a few scrapes in before the operator starts
        yield {"LLMOPT_PROMETHEUS_URL": prometheus.url, "LLMOPT_DATABASE_URL": postgres.url}
    finally:
        traffic.stop()
        prometheus.stop()
        postgres.remove()


def _count(
    custom: client.CustomObjectsApi, plural: str, ok: Callable[[dict[str, Any]], bool]
) -> int:
    items = custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
    return sum(1 for o in items if ok(o.get("status") or {}))


def _expected(custom: client.CustomObjectsApi, load: Load) -> dict[str, int]:
    """Handler runs each kind needs at start-up: every LLMConfig resumed, every unfinished
    Rollout and every policy ticked once."""
    return {
        "LLMConfig": load.namespaces * load.configs,
        "Rollout": _count(custom, "rollouts", lambda s: s.get("phase") != "Promoted"),
        "OptimizationPolicy": load.namespaces * load.policies,
    }


def handled(ports: list[int], expected: dict[str, int]) -> bool:
    """Every object handled at least once by the processes on ``ports``."""
    try:
        scrapes = [scrape(p) for p in ports]
    except OSError:
        return False
    counts = {k: sum(s.get(k, {}).get(float("inf"), 0.0) for s in scrapes) for k in expected}
    return all(counts[k] >= n for k, n in expected.items())


def _handled_counts(ports: list[int]) -> dict[str, float]:
    try:
        scrapes = [scrape(p) for p in ports]
    except OSError as exc:
        return {"error": float("nan"), "why": str(exc)}  # type: ignore[dict-item]
    kinds = {k for s in scrapes for k in s}
    return {k: sum(s.get(k, {}).get(float("inf"), 0.0) for s in scrapes) for k in kinds}


def settled(custom: client.CustomObjectsApi, load: Load) -> bool:
    """Every object of the load handled once: each LLMConfig rendered, each of the
    bench's own Rollouts (``r-N``) in a phase, each policy with a condition. Without
    the dependencies the Rollouts must stand where the bench put them (Paused, or
    Promoted); with them, where a Rollout goes depends on the policies' trials (one may
    wait for a trial's claim, or end when a trial changes its stable version), so any
    phase counts as handled; the policies' trial Rollouts are not counted."""
    total = load.namespaces * load.configs
    standing = ("Paused", "Promoted")

    def handled_rollout(r: dict[str, Any]) -> bool:
        phase = (r.get("status") or {}).get("phase")
        return bool(phase) if load.real else phase in standing

    rollouts = custom.list_cluster_custom_object(GROUP, VERSION, "rollouts")["items"]
    own = [r for r in rollouts if r["metadata"]["name"].startswith("r-")]
    return (
        _count(custom, "llmconfigs", lambda s: bool(s.get("currentHash"))) == total
        and sum(1 for r in own if handled_rollout(r)) == total
        and _count(custom, "optimizationpolicies", lambda s: bool(s.get("conditions")))
        == load.namespaces * load.policies
    )


class RssSampler:
    """Peak resident memory of some processes, sampled every 0.5 s."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = {p: 0.0 for p in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                with contextlib.suppress(psutil.Error):
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss / 2**20)
            self._stop.wait(0.5)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join(5)
        return self.peak


_LINE = re.compile(
    r'^llmopt_operator_reconcile_duration_seconds_bucket\{kind="([^"]+)",le="([^"]+)"\} (\S+)$'
)
_QUEUE = re.compile(r'^llmopt_operator_policy_queue_seconds_bucket\{le="([^"]+)"\} (\S+)$')
QUEUE = "policy queue"  # not a kind: how long due policy cycles waited for a thread


def scrape(port: int) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts per kind from an operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.setdefault(m.group(1), {})[float(m.group(2))] = float(m.group(3))
        q = _QUEUE.match(line)
        if q:
            out.setdefault(QUEUE, {})[float(q.group(1))] = float(q.group(2))
    return out


def delta(
    after: list[dict[str, dict[float, float]]], before: list[dict[str, dict[float, float]]]
) -> dict[str, dict[float, float]]:
    """Bucket counts gained between two scrapes, summed over processes."""
    out: dict[str, dict[float, float]] = {}
    for a, b in zip(after, before, strict=True):
        for kind, buckets in a.items():
            into = out.setdefault(kind, {})
            for le, n in buckets.items():
                into[le] = into.get(le, 0.0) + n - b.get(kind, {}).get(le, 0.0)
    return out


def quantile(q: float, buckets: dict[float, float]) -> float:
    """As PromQL's histogram_quantile: linear within the bucket holding the rank."""
    edges = sorted(buckets)
    total = buckets[float("inf")]
    if total <= 0:
        return float("nan")
    rank = q * total
    low, below = 0.0, 0.0
    for le in edges:
        if buckets[le] >= rank:
            if le == float("inf"):
                return low
            return low + (le - low) * (rank - below) / max(buckets[le] - below, 1e-12)
        low, below = le, buckets[le]
    return low


def merged(per_kind: dict[str, dict[float, float]]) -> dict[float, float]:
    out: dict[float, float] = {}
    for buckets in per_kind.values():
        for le, n in buckets.items():
            out[le] = out.get(le, 0.0) + n
    return out


def promote_and_time(
    custom: client.CustomObjectsApi, targets: list[tuple[str, str]], window_s: float
) -> tuple[list[float], int]:
    """Promote each (namespace, rollout) in turn, spread over the window; seconds until
    each one's status says Promoted, and how many did not within a minute after it."""
    latencies: list[float] = []
    pending: dict[tuple[str, str], float] = {}
    gap = window_s / max(len(targets), 1)
    deadline = time.monotonic() + window_s + 60
    queue = list(targets)
    next_at = time.monotonic()
    while (queue or pending) and time.monotonic() < deadline:
        now = time.monotonic()
        if queue and now >= next_at:
            ns, name = queue.pop(0)
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, "rollouts", name, {"spec": {"promote": True}}
            )
            pending[(ns, name)] = time.monotonic()
            next_at = now + gap
        for key, t0 in list(pending.items()):
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, key[0], "rollouts", key[1])
            if (obj.get("status") or {}).get("phase") == "Promoted":
                latencies.append(time.monotonic() - t0)
                del pending[key]
        time.sleep(0.2)
    return latencies, len(pending)


def _standing(custom: client.CustomObjectsApi) -> dict[str, Any]:
    """Where the Rollouts stand at the end of the window, and how many of them have a
    measurement (read from Prometheus) in their status."""
    items = custom.list_cluster_custom_object(GROUP, VERSION, "rollouts")["items"]
    phases: dict[str, int] = {}
    measured = 0
    for r in items:
        st = r.get("status") or {}
        phases[str(st.get("phase"))] = phases.get(str(st.get("phase")), 0) + 1
        measured += bool(st.get("results"))
    return {"phases": dict(sorted(phases.items())), "measured": measured}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


@dataclass
class Setup:
    name: str
    groups: list[list[str]]  # namespaces per operator process; [] = cluster-wide
    env: dict[str, str] = field(default_factory=dict)  # for the operator processes
    real: bool = False  # with Prometheus, PostgreSQL, measuring Rollouts, auto policies
    result: dict[str, Any] = field(default_factory=dict)


def run_setup(
    setup: Setup,
    plane: ControlPlane,
    api: client.ApiClient,
    load: Load,
    promote: list[tuple[str, str]],
    work: Path,
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    ports = [free_port() for _ in setup.groups]
    started = time.monotonic()
    procs = []
    for i, (group, port) in enumerate(zip(setup.groups, ports, strict=True)):
        args = ["--metrics-port", str(port)]
        for ns in group:
            args += ["-n", ns]
        proc, _ = start_operator(
            plane.kubeconfig, work / f"{setup.name}-{i}.log", extra_args=args, env=setup.env
        )
        procs.append(proc)
    rss = RssSampler([p.pid for p in procs])
    expected = _expected(custom, load)
    try:
        # The operator's own counts first (a scrape); the objects are listed (heavy: the
        # API server serializes every one) only once those are complete, every 5 s.
        while not (handled(ports, expected) and settled(custom, load)):
            if time.monotonic() - started > 900:
                raise SystemExit(
                    f"{setup.name}: objects not all handled after 15 minutes; Rollouts "
                    f"{_standing(custom)}, handled {_handled_counts(ports)} of {expected}"
                )
            time.sleep(5)
        startup_s = time.monotonic() - started
        time.sleep(10)  # past the start-up storm
        before = [scrape(p) for p in ports]
        window_started = time.monotonic()
        latencies, unfinished = promote_and_time(custom, promote, load.window_s)
        remaining = load.window_s - (time.monotonic() - window_started)
        if remaining > 0:
            time.sleep(remaining)
        window = time.monotonic() - window_started
        after = [scrape(p) for p in ports]
        standing = _standing(custom)
    finally:
        peaks = rss.stop()
        stop_pids([p.pid for p in procs])
    gained = delta(after, before)
    queue = gained.pop(QUEUE, {})
    everything = merged(gained)
    per_kind = {
        kind: {
            "count": int(b[float("inf")]),
            "p50_s": round(quantile(0.5, b), 4),
            "p99_s": round(quantile(0.99, b), 4),
        }
        for kind, b in sorted(gained.items())
    }
    asked = load.namespaces * (load.configs / 10.0 + load.policies / 15.0)
    return {
        "operators": len(procs),
        "namespaces_per_operator": [len(g) if g else load.namespaces for g in setup.groups],
        "startup_s": round(startup_s, 1),
        "window_s": round(window, 1),
        "reconcile_p50_s": round(quantile(0.5, everything), 4),
        "reconcile_p99_s": round(quantile(0.99, everything), 4),
        "policy_queue_p50_s": round(quantile(0.5, queue), 3) if queue else None,
        "policy_queue_p99_s": round(quantile(0.99, queue), 3) if queue else None,
        "reconciles": int(everything[float("inf")]),
        "reconciles_per_s": round(everything[float("inf")] / window, 1),
        "reconciles_per_s_asked": round(asked, 1),
        "by_kind": per_kind,
        "peak_rss_mb": round(max(peaks.values()), 1),
        "peak_rss_mb_each": [round(v, 1) for v in peaks.values()],
        "promote_latency_p50_s": round(_pct(latencies, 0.5), 2),
        "promote_latency_p99_s": round(_pct(latencies, 0.99), 2),
        "promotions": len(latencies),
        "promotions_unfinished": unfinished,
        "rollouts_by_phase": standing["phases"],
        "rollouts_with_measurements": standing["measured"],
    }


COLUMNS = {
    "one_operator": "one operator",
    "two_operators": "two operators (split by namespace)",
    "one_operator_unbounded": "one operator, kopf's unbounded connection pool",
    "real_dependencies": "one operator, real Prometheus and PostgreSQL, Rollouts measuring, "
    "policies auto",
    "real_dependencies_24_workers": "the same with 24 handler threads (LLMOPT_MAX_WORKERS)",
}


def report(load: Load, results: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    names = [n for n in COLUMNS if n in results]
    lead = results.get("one_operator") or results[names[0]]
    real = results.get("real_dependencies")

    def meets(r: dict[str, Any]) -> bool:
        return bool(r["reconcile_p99_s"] < TARGET_P99_S and r["peak_rss_mb"] < TARGET_RSS_MB)

    data: dict[str, Any] = {
        "reconcile_p50_s": lead["reconcile_p50_s"],
        "reconcile_p99_s": lead["reconcile_p99_s"],
        "peak_rss_mb": lead["peak_rss_mb"],
        "targets": {"reconcile_p99_s": TARGET_P99_S, "peak_rss_mb": TARGET_RSS_MB},
        "meets_targets": meets(lead),
        "meets_targets_with_real_dependencies": None if real is None else meets(real),
        "objects": {
            "namespaces": load.namespaces,
            "llmconfigs": load.namespaces * load.configs,
            "rollouts": load.namespaces * load.configs,
            "policies": load.namespaces * load.policies,
        },
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "note": "etcd and kube-apiserver (and, with the real dependencies, Prometheus "
            "and PostgreSQL) share the machine with the operator(s)",
        },
        **results,
    }
    rows = [
        ("reconcile p50 (s)", "reconcile_p50_s"),
        ("reconcile p99 (s)", "reconcile_p99_s"),
        ("peak RSS per process (MB)", "peak_rss_mb"),
        ("start-up: every object handled (s)", "startup_s"),
        ("reconciles/s achieved", "reconciles_per_s"),
        ("reconciles/s the timers ask", "reconciles_per_s_asked"),
        ("policy cycle's wait for a policy thread p50 / p99 (s)", "policy_queue"),
        ("promote → Promoted p50 (s)", "promote_latency_p50_s"),
        ("promote → Promoted p99 (s)", "promote_latency_p99_s"),
        ("promotes not Promoted a minute after the window", "promotions_unfinished"),
        ("Rollouts with a measurement in status, end of window", "rollouts_with_measurements"),
        ("Rollouts by phase, end of window", "rollouts_by_phase"),
    ]
    verdicts = [
        f"{COLUMNS[n]}: p99 {results[n]['reconcile_p99_s']:.3f} s, peak RSS "
        f"{results[n]['peak_rss_mb']:.0f} MB → **{'met' if meets(results[n]) else 'NOT met'}**"
        for n in names
        if n.startswith("real_dependencies") or n == "one_operator"
    ]
    older = [COLUMNS[n] for n in names if results[n].get("from_an_earlier_run")]
    md = [
        "# Scale: 1,000 Rollouts and 200 policies",
        "",
        "`make bench-scale` (bench/scale_bench.py). "
        f"{load.namespaces} namespaces x ({load.configs} LLMConfigs, {load.configs} Rollouts "
        f"standing at 10%, {load.policies} OptimizationPolicies); default timers (Rollout "
        "10 s, policy 15 s, drift repair 30 s). Without the dependencies the Rollouts are "
        "paused and the policies in recommend mode, with no Prometheus and no database; "
        "with them (setup `real_dependencies`) a real Prometheus scrapes every variant's "
        "series (the gateway's metric families, one synthetic request a second per variant), the "
        "Rollouts measure in an analysis step every 30 s, the policies run in mode auto "
        "with PostgreSQL as their history store. The local control plane (and the "
        f"dependencies) share this machine's {psutil.cpu_count()} cores with the operator(s).",
        "",
        f"Targets: reconcile p99 < {TARGET_P99_S:g} s, RSS < {TARGET_RSS_MB:g} MB. "
        + "; ".join(verdicts)
        + ".",
        "",
        "| | " + " | ".join(COLUMNS[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    def cell(r: dict[str, Any], key: str) -> str:
        if key == "policy_queue":
            if r.get("policy_queue_p99_s") is None:
                return "—"  # no policy thread in that operator, or an earlier run
            return f"{r['policy_queue_p50_s']} / {r['policy_queue_p99_s']}"
        return str(r.get(key))

    for label, key in rows:
        md.append(f"| {label} | " + " | ".join(cell(results[n], key) for n in names) + " |")
    if older:
        md += [
            "",
            "From an earlier run of the same bench (not re-run this time): "
            + "; ".join(older)
            + ".",
        ]
    md += [
        "",
        "Reconcile duration by kind (steady window), count / p50 / p99 in seconds:",
        "",
        "| kind | " + " | ".join(COLUMNS[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    kinds = sorted({k for n in names for k in results[n]["by_kind"]})
    for kind in kinds:
        cells = []
        for n in names:
            b = results[n]["by_kind"].get(kind, {})
            cells.append(f"{b.get('count')} / {b.get('p50_s')} / {b.get('p99_s')}")
        md.append(f"| {kind} | " + " | ".join(cells) + " |")
    md += [
        "",
        "Reconcile duration is one handler run (the operator's "
        "`llmopt_operator_reconcile_duration_seconds`), queueing before it excluded; the "
        "promote latency is what a person waits: up to one Rollout tick plus the reconcile.",
        "",
        "Memory: the operator bounds kopf's API connection pool (`LLMOPT_API_CONNECTIONS`, "
        "default 60 + 4 per watched namespace): unbounded, the start-up storm opens hundreds "
        "of TLS connections, each with buffers of its own. Its statistics use numpy only: "
        "importing scipy.stats would add about 70 MB.",
        "",
        "Splitting the load: run one operator process per group of namespaces "
        "(`llm-optimizer operator -n team-a -n team-b`, globs such as `-n 'team-a-*'` "
        "allowed; in the chart, one release per group with `operator.watch.namespaces`). "
        "Each process then holds only its namespaces' objects in memory and runs only their "
        "timers.",
        "",
    ]
    return "\n".join(md), data


@contextlib.contextmanager
def fresh_plane(work: Path, load: Load) -> Iterator[tuple[ControlPlane, client.ApiClient]]:
    """A control plane of its own, the CRDs, and every object created anew: each setup
    starts from objects no operator has handled yet (no finalizers or progress
    annotations from an earlier setup to make its start-up lighter)."""
    import subprocess

    from optimizer_operator.local.cluster import tool_path

    plane = ControlPlane(workdir=work, with_controller_manager=False)
    try:
        plane.start()
        kubectl = [str(tool_path("kubectl")), "--kubeconfig", str(plane.kubeconfig)]
        subprocess.run(
            [*kubectl, "apply", "-f", str(REPO / "crds")],
            check=True,
            capture_output=True,
        )
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        api.configuration.connection_pool_maxsize = 16
        print(f"  creating {load.namespaces * (2 * load.configs + load.policies)} objects ...")
        print(f"  done in {populate(api, load):.0f} s")
        yield plane, api
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--policies", type=int, default=20)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--only", action="append", choices=sorted(COLUMNS), help="run only these setups"
    )
    args = parser.parse_args(argv)
    load = Load(args.namespaces, args.configs, args.policies, args.window)
    load.promotions = min(load.promotions, args.namespaces * args.configs // 4)
    work = Path(tempfile.mkdtemp(prefix="llmopt-scale-"))
    names = load.names()
    half = len(names) // 2
    # A person's promote on Rollouts no policy competes with (the policies target the
    # first LLMConfigs of each namespace; their trials may hold those for a while).
    picks = [
        (names[i % len(names)], f"r-{(args.policies + i // len(names)) % args.configs}")
        for i in range(load.promotions)
    ]
    # What the operator's bounded API connection pool buys, and costs: kopf's default,
    # unbounded, instead.
    unbounded = {"LLMOPT_API_CONNECTIONS": "0"}
    try:
        results: dict[str, dict[str, Any]] = {}
        setups = [
            Setup("one_operator", [[]]),
            Setup("two_operators", [names[:half], names[half:]]),
            Setup("one_operator_unbounded", [[]], unbounded),
            Setup("real_dependencies", [[]], real=True),
            # Rollout ticks mostly wait on the API server and Prometheus: more of kopf's
            # threads, more ticks in flight (and more memory for their stacks).
            Setup(
                "real_dependencies_24_workers",
                [[]],
                {"LLMOPT_MAX_WORKERS": "24"},
                real=True,
            ),

        ]
        for setup in setups:
            if args.only and setup.name not in args.only:
                continue
            print(f"{setup.name}: starting ...")
            setup_load = dataclasses.replace(load, real=setup.real)
            with fresh_plane(work / setup.name, setup_load) as (plane, api):
                deps: contextlib.AbstractContextManager[dict[str, str]] = (
                    dependencies(work / setup.name, setup_load)
                    if setup.real
                    else contextlib.nullcontext({})
                )
                with deps as env:
                    setup.env = {**setup.env, **env}
                    results[setup.name] = run_setup(setup, plane, api, setup_load, picks, work)
            print(f"  {json.dumps(results[setup.name])}")
        earlier = args.out / "scale.json"
        if args.only and earlier.exists():
            # The setups not run this time keep their figures from the last full run,
            # marked as such (the report says which).
            previous = json.loads(earlier.read_text())
            for name in COLUMNS:
                if name not in results and name in previous:
                    results[name] = {**previous[name], "from_an_earlier_run": True}
        md, data = report(load, results)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.md").write_text(md)
        (args.out / "scale.json").write_text(json.dumps(data, indent=2) + "\n")
        print(md)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
