"""``llm-optimizer get|describe|history|recommendations|export-study``: read the three
kinds as people want to see them (also ``kubectl llmopt get …``).

Exit codes: 0 ok, 1 the API server refused, 2 the cluster cannot be reached (or
bad usage), 3 not found.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from . import live
from .cluster import connect, timeout

KINDS = {
    "policies": "optimizationpolicies",
    "policy": "optimizationpolicies",
    "optpol": "optimizationpolicies",
    "configs": "llmconfigs",
    "config": "llmconfigs",
    "llmc": "llmconfigs",
    "rollouts": "rollouts",
    "rollout": "rollouts",
    "llmro": "rollouts",
}


class Failure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _age(ts: str | None) -> str:
    if not ts:
        return "-"
    then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    s = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
              enumerate(headers)]  # fmt: skip
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _ready(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c["status"] if c["status"] == "True" else f"{c['status']} ({c.get('reason')})"
    return "-"


def _params(p: dict[str, str]) -> str:
    model = p.get("model", "").split("/")[-1]
    rest = " ".join(f"{k}={v}" for k, v in sorted(p.items()) if k != "model")
    return f"{model} {rest}".strip() or "-"


def _rows(
    plural: str, items: list[dict[str, Any]], all_ns: bool
) -> tuple[list[str], list[list[str]]]:
    def row(obj: dict[str, Any], cells: list[str]) -> list[str]:
        meta = obj["metadata"]
        head = [meta["namespace"]] if all_ns else []
        return [*head, meta["name"], *cells, _age(meta.get("creationTimestamp"))]

    head = ["NAMESPACE"] if all_ns else []
    if plural == "optimizationpolicies":
        headers = [*head, "NAME", "TARGET", "MODE", "STATE", "TRIALS", "BEST", "DECISION", "AGE"]
        rows = []
        for o in items:
            st, sp = o.get("status") or {}, o.get("spec") or {}
            best = st.get("best") or {}
            rows.append(row(o, [
                sp.get("targetRef", {}).get("name", "-"), sp.get("mode", "auto"),
                st.get("state") or "-", str(len(st.get("trialRecords") or [])),
                _params(best.get("params") or {}) if best else "-",
                (st.get("lastDecision") or "-")[:60],
            ]))  # fmt: skip
        return headers, rows
    if plural == "llmconfigs":
        headers = [*head, "NAME", "MODEL", "VERSION", "ACTIVE-ROLLOUT", "READY", "AGE"]
        rows = []
        for o in items:
            st, sp = o.get("status") or {}, o.get("spec") or {}
            current = (st.get("history") or [{}])[-1]
            rows.append(row(o, [
                f"{current.get('provider', sp.get('provider'))}/"
                f"{current.get('model', sp.get('model'))}",
                str(st.get("currentVersion", "-")), st.get("activeRollout") or "-", _ready(o),
            ]))  # fmt: skip
        return headers, rows
    headers = [*head, "NAME", "TARGET", "STRATEGY", "PHASE", "STEP", "WEIGHT", "VERDICT", "TRIAL",
               "AGE"]  # fmt: skip
    rows = []
    for o in items:
        st, sp = o.get("status") or {}, o.get("spec") or {}
        trial = sp.get("trial") or {}
        rows.append(row(o, [
            sp.get("targetRef", {}).get("name", "-"), sp.get("strategy", "canary"),
            st.get("phase") or "-", str(st.get("currentStepIndex", "-")),
            f"{st.get('canaryWeight', '-')}", st.get("verdict") or "-",
            f"{trial['policy']}#{trial['number']}" if trial else "-",
        ]))  # fmt: skip
    return headers, rows


def _custom() -> client.CustomObjectsApi:
    try:
        return connect()
    except (config.ConfigException, OSError) as exc:
        raise Failure(f"cannot reach the cluster: {exc}", 2) from exc


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404:
            raise Failure(f"{what}: not found", 3) from exc
        raise Failure(f"{what}: {exc.status} {exc.reason}", 1) from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise Failure(f"cannot reach the cluster: {exc}", 2) from exc


def _get_one(custom: client.CustomObjectsApi, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = _call(
        f"{plural} {ns}/{name}",
        lambda: custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, plural, name, _request_timeout=timeout()
        ),
    )
    return obj


def _describe_policy(o: dict[str, Any]) -> str:
    sp, st = o.get("spec") or {}, o.get("status") or {}
    out = [
        f"Policy:       {o['metadata']['namespace']}/{o['metadata']['name']} "
        f"(target LLMConfig {sp.get('targetRef', {}).get('name')}, mode {sp.get('mode', 'auto')})",
        "Objectives:   "
        + ", ".join(
            f"{x['direction']} {x['metric']} (weight {x.get('weight', '1')})"
            for x in sp.get("objectives") or []
        ),
        "Constraints:  "
        + (", ".join(f"{k}={v}" for k, v in (sp.get("constraints") or {}).items()) or "none"),
        f"Sampler:      {(sp.get('sampler') or {}).get('name', 'tpe')}",
        f"Ready:        {_ready(o)}",
        f"State:        {st.get('state', '-')}",
        f"Now:          {st.get('message', '-')}",
        f"Last decision: {st.get('lastDecision', '-')}",
    ]
    if st.get("breakerOpenUntil"):
        out.append(f"Circuit breaker open until {st['breakerOpenUntil']}")
    best = st.get("best")
    if best:
        out.append(f"Best:         trial {best['number']} {_params(best['params'])} "
                   f"score {best.get('score', '-')}")  # fmt: skip
    if st.get("paretoFront"):
        out.append(f"Pareto front: trials {', '.join(map(str, st['paretoFront']))}")
    if st.get("importance"):
        out.append("Importance:   " + ", ".join(f"{k} {v}" for k, v in st["importance"].items()))
    rec = st.get("recommendation")
    if rec:
        out.append(f"Recommendation: {_params(rec['params'])} — {rec.get('reason', '')}")
    records = st.get("trialRecords") or []
    if records:
        rows = [
            [
                str(r["number"]), _params(r.get("params") or {}), r.get("outcome") or r["state"],
                r.get("rollout") or "-", (r.get("metrics") or {}).get("quality_score", "-"),
                (r.get("metrics") or {}).get("cost_per_request_usd", "-"),
                (r.get("reason") or "")[:60],
            ]
            for r in records
        ]  # fmt: skip
        out += ["", "Trials:", _table(
            ["#", "CONFIG", "OUTCOME", "ROLLOUT", "QUALITY", "$/REQ", "REASON"], rows
        )]  # fmt: skip
    evals = st.get("ruleEvaluations") or []
    if evals:
        out += ["", "Rules (last evaluation):"]
        out += [f"  {e['rule']}: {e.get('outcome', '')} (value {e.get('value', '-')})"
                for e in evals]  # fmt: skip
    return "\n".join(out)


def _describe_config(o: dict[str, Any]) -> str:
    sp, st = o.get("spec") or {}, o.get("status") or {}
    out = [
        f"LLMConfig:    {o['metadata']['namespace']}/{o['metadata']['name']}",
        f"Spec:         {sp.get('provider')}/{sp.get('model')} {sp.get('parameters', {})}",
        f"Ready:        {_ready(o)}",
        f"Version:      {st.get('currentVersion', '-')} (hash {st.get('currentHash', '-')})",
        f"ConfigMap:    {st.get('configMapName', '-')}",
        f"Rollout:      {st.get('activeRollout') or 'none active'}",
        f"Message:      {st.get('message', '-')}",
    ]
    if st.get("quarantine"):
        out.append("Quarantined:  " + ", ".join(
            f"{q.get('hash')} ({q.get('reason', '')})" for q in st["quarantine"]
        ))  # fmt: skip
    out += ["", _history_text(o)]
    return "\n".join(out)


def _history_text(o: dict[str, Any]) -> str:
    rows = [
        [str(h["version"]), f"{h['provider']}/{h['model']}",
         " ".join(f"{k}={v}" for k, v in sorted((h.get("parameters") or {}).items())),
         h["source"], h.get("appliedAt", "-")]
        for h in (o.get("status") or {}).get("history") or []
    ]  # fmt: skip
    return "History:\n" + _table(["VERSION", "MODEL", "PARAMETERS", "SOURCE", "APPLIED"], rows)


def _describe_rollout(o: dict[str, Any]) -> str:
    sp, st = o.get("spec") or {}, o.get("status") or {}
    cand = sp.get("candidate") or {}
    out = [
        f"Rollout:      {o['metadata']['namespace']}/{o['metadata']['name']} "
        f"({sp.get('strategy', 'canary')} of LLMConfig {sp.get('targetRef', {}).get('name')})",
        f"Candidate:    {cand.get('provider')}/{cand.get('model')} {cand.get('parameters', {})}",
        f"Phase:        {st.get('phase', '-')}  step {st.get('currentStepIndex', '-')} of "
        f"{len(sp.get('steps') or [])}  weight {st.get('canaryWeight', '-')}%  "
        f"verdict {st.get('verdict', '-')}",
        f"Message:      {st.get('message', '-')}",
    ]
    if sp.get("trial"):
        out.append(f"Trial:        {sp['trial']['policy']} #{sp['trial']['number']}")
    for step in st.get("stepResults") or []:
        out.append(f"  step {step['step']}: {step['verdict']} after "
                   f"{step['measurements']} measurements")  # fmt: skip
    results = st.get("results") or []
    if results:
        out += ["", _table(["METRIC", "VERDICT", "CANARY", "STABLE", "REASON"], [
            [r["metric"], r["verdict"], str(r.get("canary", "-")), str(r.get("stable", "-")),
             (r.get("reason") or "")[:70]] for r in results
        ])]  # fmt: skip
    return "\n".join(out)


def _study_rows(o: dict[str, Any]) -> list[dict[str, Any]]:
    sp = o.get("spec") or {}
    names = [x["metric"] for x in sp.get("objectives") or []]
    rows = []
    for r in (o.get("status") or {}).get("trialRecords") or []:
        row: dict[str, Any] = {
            "number": r["number"], "state": r["state"], "outcome": r.get("outcome", ""),
            "rollout": r.get("rollout") or "", "started_at": r.get("startedAt") or "",
            "finished_at": r.get("finishedAt") or "",
        }  # fmt: skip
        row.update({f"params_{k}": v for k, v in (r.get("params") or {}).items()})
        for name, value in zip(names, r.get("values") or [], strict=False):
            row[f"values_{name}"] = value
        row.update({f"constraints_{k}": v for k, v in (r.get("constraints") or {}).items()})
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:  # noqa: C901, PLR0912, PLR0915  one branch per subcommand
    from .cluster import namespace

    try:
        custom = _custom()
        ns = namespace(args.namespace)
        if args.command == "get" and args.name:
            plural = KINDS[args.kind]
            if plural != "rollouts" and args.watch:
                raise Failure("--watch: only for a rollout (get rollout NAME -w)", 2)
            obj = _get_one(custom, ns, plural, args.name)
            if args.output == "json":
                print(json.dumps(obj, indent=2))
            elif plural == "rollouts" and args.watch:
                return live.watch(custom, ns, args.name, interval=args.interval)
            elif plural == "rollouts":
                print(live.view(obj))
            else:
                print(_table(*_rows(plural, [obj], False)))
            return 0
        if args.command == "get":
            plural = KINDS[args.kind]
            if getattr(args, "all_namespaces", False):
                items = _call(plural, lambda: custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=timeout()))["items"]  # fmt: skip
            else:
                items = _call(plural, lambda: custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, _request_timeout=timeout()))["items"]  # fmt: skip
            if args.output == "json":
                print(json.dumps(items, indent=2))
            elif not items:
                print(f"no {args.kind} in {'any namespace' if args.all_namespaces else ns}")
            else:
                print(_table(*_rows(plural, items, args.all_namespaces)))
            return 0
        if args.command == "describe":
            plural = KINDS[args.kind]
            obj = _get_one(custom, ns, plural, args.name)
            if args.output == "json":
                print(json.dumps(obj, indent=2))
            else:
                describe = {"optimizationpolicies": _describe_policy, "llmconfigs":
                            _describe_config, "rollouts": _describe_rollout}[plural]  # fmt: skip
                print(describe(obj))
            return 0
        if args.command == "history":
            obj = _get_one(custom, ns, "llmconfigs", args.name)
            history = (obj.get("status") or {}).get("history") or []
            print(json.dumps(history, indent=2) if args.output == "json" else _history_text(obj))
            return 0
        if args.command == "recommendations":
            names = [args.policy] if args.policy else [
                p["metadata"]["name"] for p in _call("policies", lambda: custom.
                list_namespaced_custom_object(GROUP, VERSION, ns, "optimizationpolicies",
                _request_timeout=timeout()))["items"]]  # fmt: skip
            recs = {}
            for name in names:
                st = _get_one(custom, ns, "optimizationpolicies", name).get("status") or {}
                recs[name] = st.get("recommendation")
            if args.output == "json":
                print(json.dumps(recs, indent=2))
            else:
                for name, rec in recs.items():
                    text = f"{_params(rec['params'])} — {rec.get('reason', '')}" if rec else "none"
                    print(f"{name}: {text}")
            return 0
        # export-study
        obj = _get_one(custom, ns, "optimizationpolicies", args.policy)
        rows = _study_rows(obj)
        if args.format == "json":
            print(json.dumps({"policy": args.policy, "namespace": ns,
                              "objectives": (obj.get("spec") or {}).get("objectives"),
                              "trials": rows}, indent=2))  # fmt: skip
        else:
            fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "number", k))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
            print(buf.getvalue(), end="")
        return 0
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser, json_ok: bool = True) -> None:
        p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
        if json_ok:
            p.add_argument("-o", "--output", choices=["table", "json"], default="table")
        p.set_defaults(func=run)

    get = sub.add_parser(
        "get",
        help="list policies, configs or rollouts as a table",
        description="List one kind, or show one object. Examples:\n"
        "  llm-optimizer get policies -A\n"
        "  kubectl llmopt get rollouts -n shop -o json\n"
        "  llm-optimizer get rollout checkout-canary -w   (steps, weights, evidence, live)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("kind", choices=sorted(KINDS))
    get.add_argument("name", nargs="?", help="one object; a rollout is drawn in full")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument(
        "-w", "--watch", action="store_true",
        help="with a rollout's name: draw it again on every change, until Ctrl-C",
    )  # fmt: skip
    get.add_argument(
        "--interval", type=float, default=1.0, help="with --watch: seconds between reads"
    )
    common(get)
    desc = sub.add_parser(
        "describe",
        help="one object in full: a policy's decisions and trials, a config's versions, "
        "a rollout's steps and verdicts",
    )
    desc.add_argument("kind", choices=sorted(KINDS))
    desc.add_argument("name")
    common(desc)
    hist = sub.add_parser("history", help="an LLMConfig's versions, newest last")
    hist.add_argument("name")
    common(hist)
    rec = sub.add_parser(
        "recommendations", help="what policies in mode recommend (or any policy) recommend"
    )
    rec.add_argument("policy", nargs="?")
    common(rec)
    exp = sub.add_parser(
        "export-study", help="a policy's trials (params, values, constraints) as CSV or JSON"
    )
    exp.add_argument("policy")
    exp.add_argument("--format", choices=["csv", "json"], default="csv")
    common(exp, json_ok=False)
