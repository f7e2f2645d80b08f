"""Validate a policy or rollout and check that the LLMConfig it targets exists."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION, ApiModel
from ..api.conditions import now_rfc3339, set_condition
from ..api.kinds import LLMCONFIG
from ..api.validation import InvalidSpec, parse_spec
from .configmap import REQUEST_TIMEOUT
from .llmconfig import Outcome


def read_llmconfig(
    custom: client.CustomObjectsApi, namespace: str, name: str
) -> dict[str, Any] | None:
    """The LLMConfig ``name``, or None when it does not exist."""
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, LLMCONFIG.plural, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def accept_targeting(
    body: dict[str, Any],
    model: type[ApiModel],
    *,
    custom: client.CustomObjectsApi,
    ready_reason: str,
    ready_message: str,
    extra_status: dict[str, Any] | None = None,
    now: str | None = None,
) -> Outcome:
    """Ready=True when the spec is valid and its spec.targetRef LLMConfig exists."""
    now = now or now_rfc3339()
    meta, status = body["metadata"], dict(body.get("status") or {})
    generation = meta.get("generation")

    def result(ok: bool, reason: str, message: str) -> Outcome:
        status.update(
            {
                "observedGeneration": generation,
                "conditions": set_condition(
                    status.get("conditions"),
                    type="Ready",
                    status="True" if ok else "False",
                    reason=reason,
                    message=message,
                    generation=generation,
                    now=now,
                ),
                "message": message,
            }
        )
        return Outcome(status=status, events=[] if ok else [("Warning", reason, message)])

    try:
        spec = parse_spec(model, body.get("spec"))
    except InvalidSpec as exc:
        return result(False, "InvalidSpec", str(exc))
    target = spec.target_ref.name  # type: ignore[attr-defined]
    if read_llmconfig(custom, meta["namespace"], target) is None:
        outcome = result(
            False,
            "TargetNotFound",
            f"spec.targetRef.name: LLMConfig {target} not found in {meta['namespace']}",
        )
        outcome.retry_after = 15
        return outcome
    for key, value in (extra_status or {}).items():
        status.setdefault(key, value)
    return result(True, ready_reason, ready_message)
