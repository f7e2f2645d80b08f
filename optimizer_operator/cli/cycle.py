"""``llm-optimizer cycle --once``: one optimization cycle per policy, then exit.

For users who want no long-running operator (a CronJob): the same cycle the
operator's timer runs, writing the same status and Events. Rollouts it starts
still need something to drive them — the operator, or the next run of
``cycle`` with ``--rollouts``, which also ticks every active Rollout once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..act.outcome import write_outcome
from ..api.common import GROUP, VERSION
from .cluster import timeout as api_timeout


def add_parser(sub: Any) -> None:
    cy = sub.add_parser(
        "cycle",
        help="run one optimization cycle for each policy and exit (batch mode)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cy.add_argument("policies", nargs="*", help="policy names (default: all in the namespace)")
    cy.add_argument("--once", action="store_true", help="one cycle, then exit (the only mode)")
    cy.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    cy.add_argument("-A", "--all-namespaces", action="store_true")
    cy.add_argument("--rollouts", action="store_true", help="also tick each active Rollout once")
    cy.add_argument(
        "--prometheus-url", default=os.environ.get("LLMOPT_PROMETHEUS_URL"), help="Prometheus"
    )
    cy.add_argument(
        "--database-url",
        default=os.environ.get("LLMOPT_DATABASE_URL"),
        help="PostgreSQL history (default: $LLMOPT_DATABASE_URL; none: status only)",
    )
    cy.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..decide.actions import TERMINAL
    from ..handlers.environment import prometheus_cooldown, prometheus_timeout
    from ..observe.prometheus import PrometheusSource
    from ..observe.prometheus_access import PrometheusAccess
    from ..reconcile.policy import run_cycle
    from ..reconcile.rollout import reconcile_rollout
    from ..store.postgres import HistoryStore
    from .cluster import connect, namespace

    try:
        connect()  # --kubeconfig/--context, in-cluster, or $KUBECONFIG
    except (config.ConfigException, OSError) as exc:
        print(f"error: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    try:
        timeout, cooldown = prometheus_timeout(), prometheus_cooldown()
        access = PrometheusAccess.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    custom, core, apps = client.CustomObjectsApi(), client.CoreV1Api(), client.AppsV1Api()
    source = (
        PrometheusSource(args.prometheus_url, timeout=timeout, cooldown=cooldown, access=access)
        if args.prometheus_url
        else None
    )
    store = HistoryStore(args.database_url) if args.database_url else None
    ns = None if args.all_namespaces else namespace(args.namespace)

    def listing(plural: str) -> list[dict[str, Any]]:
        if ns is None:
            return list(
                custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=api_timeout()
                )["items"]
            )
        return list(
            custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, plural, _request_timeout=api_timeout()
            )["items"]
        )

    try:
        policies = listing("optimizationpolicies")
        if args.policies:
            policies = [p for p in policies if p["metadata"]["name"] in args.policies]
            missing = set(args.policies) - {p["metadata"]["name"] for p in policies}
            if missing:
                print(f"error: no policy {', '.join(sorted(missing))}", file=sys.stderr)
                return 3
        failed = 0
        for pol in policies:
            outcome = run_cycle(pol, custom=custom, source=source, store=store)
            meta = pol["metadata"]
            write_outcome(custom, core, pol, "optimizationpolicies", outcome)
            ready: dict[str, Any] = next(
                (c for c in outcome.status.get("conditions", []) if c["type"] == "Ready"), {}
            )
            failed += ready.get("status") == "False"
            print(
                f"{meta['namespace']}/{meta['name']}: {outcome.status.get('state', '-')}: "
                f"{outcome.status.get('message', '')}"
            )
        if args.rollouts:
            for ro in listing("rollouts"):
                if (ro.get("status") or {}).get("phase") in TERMINAL:
                    continue
                outcome = reconcile_rollout(ro, core=core, apps=apps, custom=custom, source=source)
                write_outcome(custom, core, ro, "rollouts", outcome)
    except ApiException as exc:
        print(f"error: {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    return 1 if failed else 0
