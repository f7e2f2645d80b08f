"""``llm-optimizer undo LLMCONFIG [--to-version N]``: back to an earlier version.

After the optimizer promotes a config, the LLMConfig's spec no longer says what runs,
and applying the old spec again changes nothing (same hash). Undo is the way back: it
creates a Rollout of version N's config (default: the version before stable), as a
person's Rollout, so no rate limit or quarantine holds it back. With
``spec.delivery.strategy: canary`` it walks the delivery's steps and analysis like any
change a person makes; with ``immediate`` it moves all traffic at once and is promoted
at its first tick. The Rollout records who asked (the kubeconfig user) in an annotation.

Exit codes: 0 requested, 1 API error, 2 cluster unreachable, 3 LLMConfig not found,
4 nothing to undo to (the version is not kept, or is already stable).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..act import rollouts
from ..act.llmconfigs import read_llmconfig
from ..api.common import GROUP
from ..api.llmconfig import LLMConfigObject, VersionRecord
from ..api.names import label_value
from .cluster import (
    REQUESTED_BY,
    NotFound,
    Refused,
    connect,
    guarded,
    namespace,
    request_rollout,
    requester,
)

LABEL_UNDO = f"{GROUP}/undo-of"


def add_parser(sub: Any) -> None:
    un = sub.add_parser(
        "undo",
        help="roll an LLMConfig back to an earlier version (default: the one before stable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    un.add_argument("name", help="LLMConfig name")
    un.add_argument("--to-version", type=int, help="version number from status.history")
    un.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    un.set_defaults(func=run)


def target_version(llmc: LLMConfigObject, version: int | None) -> VersionRecord:
    """The version to go back to: ``version``, else the one before stable."""
    history, stable = llmc.status.history, llmc.stable
    if stable is None:
        raise Refused(f"LLMConfig {llmc.name} has no stable version yet")
    if version is None:
        if llmc.previous is None:
            raise Refused(f"LLMConfig {llmc.name} has no version before v{stable.version}")
        return llmc.previous
    found = next((v for v in history if v.version == version), None)
    if found is None:
        kept = ", ".join(f"v{v.version}" for v in history)
        raise Refused(f"v{version} is not in status.history (kept: {kept})")
    if found.hash == stable.hash:
        raise Refused(f"v{version} is the stable configuration already")
    return found


def undo_rollout(
    llmc: LLMConfigObject, version: VersionRecord, name: str, who: str
) -> dict[str, Any]:
    """The Rollout that takes ``llmc`` back to ``version``'s config."""
    delivery = llmc.spec.delivery
    spec: dict[str, Any] = {
        "targetRef": {"name": llmc.name},
        "candidate": version.model_config_part().to_wire(),
    }
    if delivery.strategy == "canary":
        if delivery.steps:
            spec["steps"] = [s.to_wire() for s in delivery.steps]
        if delivery.analysis:
            spec["analysis"] = delivery.analysis.to_wire()
    else:
        spec["steps"] = [{"setWeight": 100}]
    return rollouts.build_rollout(
        name,
        llmc.namespace,
        spec,
        labels={LABEL_UNDO: label_value(llmc.name)},
        annotations={REQUESTED_BY: who, f"{GROUP}/undo-to": f"v{version.version}"},
        owner=None,  # a person's Rollout: never held back
    )


def run(args: argparse.Namespace) -> int:
    ns = namespace(args.namespace)
    return guarded(f"undo {ns}/{args.name}", lambda: _undo(ns, args.name, args.to_version))


def _undo(ns: str, name: str, to_version: int | None) -> int:
    custom = connect()
    found = read_llmconfig(custom, ns, name)
    if found is None:
        raise NotFound(f"LLMConfig {ns}/{name}")
    llmc = LLMConfigObject.parse(found)
    version = target_version(llmc, to_version)
    who = requester()
    rollout, running = request_rollout(
        custom,
        ns,
        f"{llmc.name}-undo-v{version.version}",
        lambda free: undo_rollout(llmc, version, free, who),
    )
    how = (
        "through the delivery's canary steps"
        if llmc.spec.delivery.strategy == "canary"
        else "all traffic at once"
    )
    already = " (requested before; still running)" if running else ""
    print(f"undo: Rollout {rollout} takes {ns}/{name} back to v{version.version} "
          f"({version.provider}/{version.model}), {how}{already}")  # fmt: skip
    active = llmc.status.active_rollout
    if active and active != rollout:
        print(f"note: Rollout {active} holds the LLMConfig; the undo starts when it ends "
              f"(llm-optimizer rollout abort {active} to end it now)")  # fmt: skip
    print(f"follow it: llm-optimizer rollout status {rollout} -n {ns}")
    return 0
