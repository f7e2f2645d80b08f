"""``llm-optimizer rollout …`` and the kubectl plugin ``kubectl llmopt …``.

Manual control goes through the Rollout's spec (``paused``, ``abort``,
``promote``, and the counters ``stepPromotions`` and ``retry``), so the CLI,
kubectl and GitOps tools all drive the same fields. Patches carry the
resourceVersion they read, so two people pressing at once cannot lose a request.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubernetes import config
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION, parse_duration
from . import live
from .cluster import FIELD_MANAGER, REQUESTED_BY, connect, namespace, requester, timeout

ACTIONS = ("promote", "abort", "retry", "pause", "resume")


def _patch(action: str, spec: dict[str, Any], full: bool) -> dict[str, Any]:
    """The spec change for ``action``; counters make repeated requests distinct."""
    if action == "promote" and full:
        return {"promote": True, "paused": False}
    if action == "promote":
        return {"stepPromotions": int(spec.get("stepPromotions") or 0) + 1, "paused": False}
    if action == "retry":
        return {"retry": int(spec.get("retry") or 0) + 1, "abort": False, "promote": False}
    if action == "abort":
        return {"abort": True}
    return {"paused": action == "pause"}


def add_parser(sub: Any) -> None:
    ro = sub.add_parser(
        "rollout",
        help="promote, abort, retry, pause, resume or show a Rollout",
        description="Control a Rollout through its spec (what GitOps sees too).\n\n"
        "  promote       skip the current pause or analysis step\n"
        "  promote --full  make the candidate stable now, skipping every step left\n"
        "  abort         all traffic back to stable now\n"
        "  retry         start a rolled-back or aborted rollout again from step 0\n"
        "                (also lifts the candidate's quarantine)\n"
        "  pause/resume  freeze or unfreeze the rollout where it is\n"
        "  status        show phase, step, weight, verdict and per-metric results;\n"
        "                with --timeout D, wait up to D for the rollout to end\n\n"
        "Exit codes: 0 ok, 1 API error, 2 cluster unreachable, 3 rollout not found.\n"
        "status: 0 promoted, 5 ended without promotion (rolled back, aborted, failed),\n"
        "6 not ended (yet: still running when --timeout ran out, or without --timeout).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ro.add_argument("action", choices=[*ACTIONS, "status"])
    ro.add_argument("name", help="Rollout name")
    ro.add_argument(
        "--full", action="store_true", help="with promote: promote fully, skipping all steps"
    )
    ro.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    ro.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ro.add_argument(
        "--timeout",
        type=wait_duration,
        default=None,
        help='with status: wait up to this long for the end ("90s", "10m", "1h"; 0: look '
        "once), printing each new phase",
    )
    ro.set_defaults(func=run)


def wait_duration(text: str) -> float:
    """``--timeout``'s value: a duration ("90s", "5m") or a number of seconds."""
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want a duration such as 90s or 10m"
        ) from None


def add_status_parser(sub: Any) -> None:
    """``llm-optimizer status NAME``: the same as ``rollout status NAME``."""
    st = sub.add_parser(
        "status",
        help="a Rollout's status; with --timeout, wait for its end (exit 0 only if promoted)",
        description="Show a Rollout's status, or wait for its end, for pipelines.\n\n"
        "Exit codes: 0 promoted, 5 ended without promotion (rolled back, aborted, failed),\n"
        "6 not ended (still running when --timeout ran out, or without --timeout),\n"
        "1 API error, 2 cluster unreachable, 3 not found.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("name", help="Rollout name")
    st.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    st.add_argument(
        "--timeout",
        type=wait_duration,
        default=None,
        help='wait up to this long for the end ("90s", "10m"; 0: look once)',
    )
    st.set_defaults(func=run, action="status", full=False)


def run(args: argparse.Namespace) -> int:
    ns = namespace(args.namespace)
    try:
        custom = connect()
        if args.action == "status" and args.timeout is not None and args.output == "text":
            return live.status(custom, ns, args.name, wait_seconds=args.timeout)
        if args.action in ACTIONS:
            current = custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, "rollouts", args.name, _request_timeout=timeout()
            )
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "rollouts",
                args.name,
                {
                    "metadata": {
                        "resourceVersion": current["metadata"]["resourceVersion"],
                        "annotations": {REQUESTED_BY: requester()},  # who, for the audit
                    },
                    "spec": _patch(args.action, current.get("spec") or {}, args.full),
                },
                field_manager=FIELD_MANAGER,
                _request_timeout=timeout(),
            )
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, "rollouts", args.name, _request_timeout=timeout()
        )
    except ApiException as exc:
        reason = {404: "not found", 409: "changed by someone else meanwhile; run again"}.get(
            exc.status, f"{exc.status} {exc.reason}"
        )
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
        return _exit_code(args.action, status)
    if args.action in ACTIONS:
        what = "promote --full" if args.action == "promote" and args.full else args.action
        print(f"rollout {ns}/{args.name}: {what} requested")
    print(
        f"phase {status.get('phase', '-')}  step {status.get('currentStepIndex', '-')}  "
        f"weight {status.get('canaryWeight', '-')}%  verdict {status.get('verdict', '-')}"
    )
    if status.get("message"):
        print(status["message"])
    for step in status.get("stepResults") or []:
        print(f"  step {step['step']}: {step['verdict']} after {step['measurements']} measurements")
    for r in status.get("results") or []:
        print(
            f"  {r['metric']:<22} {r['verdict']:<9} canary {r.get('canary', '-'):<10} "
            f"stable {r.get('stable', '-'):<10} {r.get('reason', '')}"
        )
    return _exit_code(args.action, status)


def _exit_code(action: str, status: dict[str, Any]) -> int:
    """0 for a control action carried out; for status, how the rollout stands."""
    if action != "status":
        return 0
    phase = status.get("phase")
    if phase in live.ENDED:
        return live.PROMOTED if phase == "Promoted" else live.NOT_PROMOTED
    return live.TIMED_OUT
