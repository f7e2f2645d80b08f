"""``llm-optimizer accept POLICY [--trial N]``: roll out what a policy recommends.

In mode ``recommend`` a policy records each recommendation as a trial and moves on; this
rolls one out (default: the latest, ``status.recommendation``; or any trial by number)
as a person's Rollout, with the policy's steps and analysis, its constraints riding as
critical rollback triggers — accepted, still guarded. The Rollout records who asked.

Exit codes: 0 requested, 1 API error or invalid object, 2 cluster unreachable,
3 policy or LLMConfig not found, 4 nothing to accept (no such trial, or its config is
stable already, or was proposed over a stable version that has changed since).
"""

from __future__ import annotations

import argparse
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..act import rollouts
from ..act.llmconfigs import read_llmconfig
from ..api.common import GROUP, VERSION
from ..api.kinds import OPTIMIZATION_POLICY
from ..api.llmconfig import LLMConfigObject, ModelConfig
from ..api.names import label_value
from ..api.policy import OptimizationPolicySpec, OptimizationPolicyStatus, TrialRecord
from ..api.validation import parse_spec
from ..decide import optimizer, trials
from .cluster import (
    REQUESTED_BY,
    NotFound,
    Refused,
    connect,
    guarded,
    namespace,
    request_rollout,
    requester,
    timeout,
)

ANNOTATION_ACCEPTED = f"{GROUP}/accepted-trial"


def add_parser(sub: Any) -> None:
    ac = sub.add_parser(
        "accept",
        help="roll out a policy's recommendation (default: its latest) as a guarded Rollout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ac.add_argument("policy", help="OptimizationPolicy name")
    ac.add_argument("--trial", type=int, help="trial number (default: status.recommendation)")
    ac.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    ac.set_defaults(func=run)


def chosen(status: OptimizationPolicyStatus, number: int | None) -> TrialRecord:
    if number is None:
        if status.recommendation is None:
            raise Refused("no recommendation yet (status.recommendation is empty)")
        return status.recommendation
    found = next((r for r in status.trial_records if r.number == number), None)
    if found is None:
        raise Refused(f"trial {number} is not in status.trialRecords")
    return found


def candidate(
    spec: OptimizationPolicySpec, record: TrialRecord, llmc: LLMConfigObject
) -> ModelConfig:
    """The trial's configuration, as it was proposed over the LLMConfig's stable version."""
    stable = llmc.stable
    if stable is None:
        raise Refused(f"LLMConfig {llmc.name} has no stable version yet")
    config_ = optimizer.config_of(spec, stable.model_config_part(), record.params)
    if config_.config_hash() == stable.hash:
        raise Refused(f"trial {record.number}'s configuration is the stable one already")
    if config_.config_hash() != record.hash:
        raise Refused(
            f"trial {record.number} was proposed over another stable version (now "
            f"v{stable.version}); its configuration is not known any more — wait for the "
            "next recommendation"
        )
    return config_


def accept_rollout(
    spec: OptimizationPolicySpec,
    policy: str,
    ns: str,
    record: TrialRecord,
    config_: ModelConfig,
    name: str,
    who: str,
) -> dict[str, Any]:
    template = spec.rollout_template
    body = rollouts.build_rollout(
        name,
        ns,
        {
            "targetRef": {"name": spec.target_ref.name},
            "candidate": config_.to_wire(),
            "strategy": template.strategy,
            "steps": [s.to_wire() for s in (template.steps or trials.DEFAULT_STEPS)],
            "analysis": trials.trial_analysis(spec).to_wire(),
        },
        labels={f"{GROUP}/policy": label_value(policy)},
        annotations={REQUESTED_BY: who, ANNOTATION_ACCEPTED: str(record.number)},
        owner=None,  # a person's Rollout: never held back
    )
    if template.strategy != "canary":
        body["spec"].pop("steps")
    return body


def run(args: argparse.Namespace) -> int:
    ns = namespace(args.namespace)
    return guarded(f"accept {ns}/{args.policy}", lambda: _accept(ns, args.policy, args.trial))


def _accept(ns: str, policy: str, trial: int | None) -> int:
    custom = connect()
    try:
        obj = custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, OPTIMIZATION_POLICY.plural, policy, _request_timeout=timeout()
        )
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"OptimizationPolicy {ns}/{policy}") from None
        raise
    spec = parse_spec(OptimizationPolicySpec, obj.get("spec"))
    raw = {k: v for k, v in (obj.get("status") or {}).items()
           if k not in ("conditions", "observedGeneration")}  # fmt: skip
    record = chosen(OptimizationPolicyStatus.model_validate(raw), trial)
    found = read_llmconfig(custom, ns, spec.target_ref.name)
    if found is None:
        raise NotFound(f"LLMConfig {ns}/{spec.target_ref.name}")
    llmc = LLMConfigObject.parse(found)
    config_ = candidate(spec, record, llmc)
    who = requester()
    name, running = request_rollout(
        custom,
        ns,
        f"{policy}-accept-t{record.number}",
        lambda free: accept_rollout(spec, policy, ns, record, config_, free, who),
    )
    already = " (requested before; still running)" if running else ""
    print(f"accept: Rollout {name} rolls out trial {record.number} of {ns}/{policy} "
          f"({config_.provider}/{config_.model} {record.params}){already}")  # fmt: skip
    print(f"follow it: llm-optimizer rollout status {name} -n {ns}")
    return 0
