"""``llm-optimizer rollout …`` and the kubectl plugin ``kubectl llmopt …``.

Manual control goes through the Rollout's spec (``paused``, ``abort``,
``promote``), so the CLI, kubectl and GitOps tools all drive the same fields.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .api.common import GROUP, VERSION

ACTIONS: dict[str, dict[str, Any]] = {
    "promote": {"promote": True, "paused": False},
    "abort": {"abort": True},
    "pause": {"paused": True},
    "resume": {"paused": False},
}


def _custom() -> client.CustomObjectsApi:
    from .handlers.clients import load_config

    load_config()
    return client.CustomObjectsApi()


def _namespace(arg: str | None) -> str:
    if arg:
        return arg
    try:
        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError, TypeError):
        return "default"


def add_parser(sub: Any) -> None:
    ro = sub.add_parser(
        "rollout",
        help="promote, abort, pause, resume or show a Rollout",
        description="Control a Rollout through its spec (what GitOps sees too).",
    )
    ro.add_argument("action", choices=[*ACTIONS, "status"])
    ro.add_argument("name", help="Rollout name")
    ro.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    ro.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ro.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ns = _namespace(args.namespace)
    try:
        custom = _custom()
        if args.action in ACTIONS:
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "rollouts",
                args.name,
                {"spec": ACTIONS[args.action]},
                _request_timeout=(5, 15),
            )
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "rollouts", args.name, _request_timeout=(5, 15)
        )
    except ApiException as exc:
        reason = "not found" if exc.status == 404 else f"{exc.status} {exc.reason}"
        print(f"error: rollout {ns}/{args.name}: {reason}", file=sys.stderr)
        return 3 if exc.status == 404 else 1
    except (config.ConfigException, OSError) as exc:
        print(f"error: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    status = obj.get("status") or {}
    if args.output == "json":
        print(
            json.dumps(
                {"name": args.name, "namespace": ns, "spec": obj.get("spec"), "status": status},
                indent=2,
            )
        )
        return 0
    if args.action in ACTIONS:
        print(f"rollout {ns}/{args.name}: {args.action} requested")
    print(
        f"phase {status.get('phase', '-')}  step {status.get('currentStepIndex', '-')}  "
        f"weight {status.get('canaryWeight', '-')}%  verdict {status.get('verdict', '-')}"
    )
    if status.get("message"):
        print(status["message"])
    for r in status.get("results") or []:
        print(
            f"  {r['metric']:<22} {r['verdict']:<9} canary {r.get('canary', '-'):<10} "
            f"stable {r.get('stable', '-'):<10} {r.get('reason', '')}"
        )
    return 0


def kubectl_plugin() -> int:
    """``kubectl llmopt ACTION NAME``: the same as ``llm-optimizer rollout ACTION NAME``."""
    from .cli import main

    return main(["rollout", *sys.argv[1:]])
