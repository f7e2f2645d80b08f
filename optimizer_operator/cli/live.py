"""A Rollout as people follow it: ``get rollout NAME [-w]`` draws its steps, weights,
verdict and per-metric evidence (again on every change with ``-w``), and
``status NAME [--timeout D]`` waits for its end and says how it ended by its exit code,
so a pipeline can gate on it (as ``kubectl argo rollouts status`` does).

Exit codes of ``status``: 0 promoted, 5 ended without promotion (rolled back, aborted
or failed), 6 still running when the timeout ran out; and as for every command 1 an
API error, 2 the cluster unreachable, 3 not found.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TextIO

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from .cluster import timeout

PROMOTED, NOT_PROMOTED, TIMED_OUT = 0, 5, 6
ENDED = {"Promoted", "RolledBack", "Aborted", "Failed"}


def _step(step: dict[str, Any]) -> str:
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        pause = step.get("pause") or {}
        return f"pause {pause['duration']}" if pause.get("duration") else "pause (until promoted)"
    analysis = step.get("analysis") or {}
    return f"analysis x{analysis.get('measurements', 1)}"


def _steps(spec: dict[str, Any], status: dict[str, Any]) -> list[str]:
    strategy = spec.get("strategy", "canary")
    if strategy != "canary":
        return [f"  {strategy}: see spec.{strategy} (no steps)"]
    steps = spec.get("steps") or [
        {"setWeight": 5}, {"analysis": {}}, {"setWeight": 25}, {"analysis": {}},
        {"setWeight": 50}, {"analysis": {}},
    ]  # fmt: skip
    current = status.get("currentStepIndex")
    ended = status.get("phase") in ENDED or status.get("phase") == "Baking"
    verdicts = {r["step"]: r["verdict"] for r in status.get("stepResults") or []}
    out = []
    for i, step in enumerate(steps):
        if ended and status.get("phase") in ("Promoted", "Baking"):
            mark = "done"
        elif current is None or i > current:
            mark = "    "
        elif i < current:
            mark = "done"
        else:
            mark = "  ->" if not ended else "stop"
        verdict = f"  {verdicts[i]}" if i in verdicts else ""
        out.append(f"  {mark}  {i}: {_step(step)}{verdict}")
    return out


def view(obj: dict[str, Any]) -> str:
    """The Rollout drawn as text: what it changes, where it stands, why."""
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    cand = spec.get("candidate") or {}
    params = " ".join(f"{k}={v}" for k, v in sorted((cand.get("parameters") or {}).items()))
    routing = spec.get("trafficRouting", "configMap")
    if routing == "gatewayAPI":
        g = spec.get("gatewayAPI") or {}
        routing += (
            f" (HTTPRoute {g.get('httpRoute')}: {g.get('stableBackend', {}).get('name')} / "
            f"{g.get('canaryBackend', {}).get('name')})"
        )
    lines = [
        f"Name:        {meta['namespace']}/{meta['name']}",
        f"Target:      LLMConfig {spec.get('targetRef', {}).get('name')}",
        f"Candidate:   {cand.get('provider')}/{cand.get('model')} {params}".rstrip(),
        f"Strategy:    {spec.get('strategy', 'canary')}, traffic by {routing}",
        f"Phase:       {st.get('phase', 'Pending')}",
        f"Weight:      {st.get('canaryWeight', 0)}% to the candidate"
        + (f" ({st['stableVariant']} / {st['canaryVariant']})" if st.get("canaryVariant") else ""),
        f"Verdict:     {st.get('verdict') or '-'}",
        f"Message:     {st.get('message') or '-'}",
        "Steps:",
        *_steps(spec, st),
    ]
    results = st.get("results") or []
    if results:
        lines.append("Metrics (latest measurement):")
        for r in results:
            lines.append(
                f"  {r['metric']:<22} {r['verdict']:<9} canary {r.get('canary', '-'):<10} "
                f"stable {r.get('stable', '-'):<10} {(r.get('reason') or '')[:80]}"
            )
    bounds = st.get("bounds") or []
    if bounds:
        lines.append("Rollback triggers:")
        for b in bounds:
            lines.append(f"  {b['trigger']:<22} {b['state']:<9} {(b.get('message') or '')[:90]}")
    return "\n".join(lines)


def _read(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "rollouts", name, _request_timeout=timeout()
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def _one_line_errors(fn: Callable[..., int]) -> Callable[..., int]:
    """An API error or a lost connection while following: one line and its exit code."""

    @wraps(fn)
    def run(custom: client.CustomObjectsApi, ns: str, name: str, **kwargs: Any) -> int:
        try:
            return fn(custom, ns, name, **kwargs)
        except ApiException as exc:
            print(f"error: rollout {ns}/{name}: {exc.status} {exc.reason}", file=sys.stderr)
            return 1
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            print(f"error: cannot reach the cluster: {exc}", file=sys.stderr)
            return 2

    return run


@_one_line_errors
def watch(
    custom: client.CustomObjectsApi,
    ns: str,
    name: str,
    *,
    interval: float = 1.0,
    out: TextIO = sys.stdout,
) -> int:
    """Draw the Rollout again whenever it changes, until interrupted (0) or deleted (3).
    On a terminal the view replaces the last one; piped, each view follows the last."""
    last = None
    tty = out.isatty()
    try:
        while True:
            obj = _read(custom, ns, name)
            if obj is None:
                print(f"error: rollout {ns}/{name} not found", file=sys.stderr)
                return 3
            text = view(obj)
            if text != last:
                if tty:
                    out.write("\x1b[H\x1b[2J")
                elif last is not None:
                    out.write("\n")
                out.write(text + "\n")
                out.flush()
                last = text
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


@_one_line_errors
def status(
    custom: client.CustomObjectsApi,
    ns: str,
    name: str,
    *,
    wait_seconds: float | None,
    interval: float = 1.0,
    out: TextIO = sys.stdout,
) -> int:
    """Wait until the Rollout ends (or ``wait_seconds`` pass; None waits without end, 0
    looks once) and return the exit code for how it ended, printing each new phase."""
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    seen = None
    while True:
        obj = _read(custom, ns, name)
        if obj is None:
            print(f"error: rollout {ns}/{name} not found", file=sys.stderr)
            return 3
        st = obj.get("status") or {}
        phase = st.get("phase") or "Pending"
        line = f"{phase}: {st.get('message') or phase}"
        if line != seen:
            print(f"rollout {ns}/{name}: {line}", file=out, flush=True)
            seen = line
        if phase in ENDED:
            return PROMOTED if phase == "Promoted" else NOT_PROMOTED
        if deadline is not None and time.monotonic() >= deadline:
            print(
                f"error: rollout {ns}/{name} still {phase} after {wait_seconds:g}s",
                file=sys.stderr,
            )
            return TIMED_OUT
        time.sleep(interval)
