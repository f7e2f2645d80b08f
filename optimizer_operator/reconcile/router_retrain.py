"""A policy's router retraining (``spec.routerTraining``), in a cycle it is due — after
the rules and the running trials, before the optimizer's gates.

The stable config's router is retrained on its cheap model's labelled answers from the
gateways' recordings of this LLMConfig (``observe.recordings``), in a child process with
a time limit (``routers.retrain``), and measured against the current router on held-out
recordings (``decide.router_retrain.judge``). A better one is written as a ConfigMap of
its own, named by its digest and owned by the policy, and canaried against the current
router as a Rollout of the policy (``<policy>-retrain-v<version>``; in mode recommend only
recommended): promoted or rolled back on evidence like any change, and once stable, the
search's router choice uses it (``decide.router_retrain.effective_spec``). Nothing is
written when the data is short, the retrained router is not better, or training fails;
``status.routerTraining`` and an Event say which.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..act import rollouts
from ..act.router_artifacts import RouterArtifactProblem, read_artifact, write_artifact
from ..api.common import GROUP
from ..api.llmconfig import RouterArtifactRef
from ..api.names import label_value
from ..api.policy import RouterTrainingStatus
from ..api.timestamps import format_ts, parse_optional
from ..decide import router_retrain
from ..observe import recordings
from .cycle_state import CycleState

LABEL_RETRAIN = f"{GROUP}/router-retrain"


@dataclass(frozen=True)
class Training:
    """The operator's settings for retraining."""

    recordings: Path | None = None
    timeout: float = 600.0


class RetrainFailed(Exception):
    """Training did not produce an artifact; the message says why."""


def due_now(c: CycleState) -> bool:
    t = c.spec.router_training
    if t is None:
        return False
    created = parse_optional(c.body["metadata"].get("creationTimestamp"))
    return router_retrain.due(t, c.status.router_training, c.now, created)


def _child(request: dict[str, object], timeout: float) -> dict[str, object]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "optimizer_operator.routers.retrain"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RetrainFailed(
            f"training took longer than {timeout:g}s (LLMOPT_RETRAIN_TIMEOUT); stopped"
        ) from None
    try:
        answer = json.loads(proc.stdout or "{}")
    except ValueError:
        answer = {}
    if proc.returncode != 0 or not isinstance(answer, dict) or "artifact" not in answer:
        why = answer.get("error") if isinstance(answer, dict) else None
        raise RetrainFailed(str(why or proc.stderr.strip()[-500:] or f"exit {proc.returncode}"))
    return answer


def retrain(c: CycleState, training: Training) -> bool:
    """Retrain now; True when a canary Rollout was created (the cycle ends there)."""
    t = c.spec.router_training
    assert t is not None
    s = c.status
    previous = s.router_training or RouterTrainingStatus()
    st = previous.model_copy(
        update={"last_run": format_ts(c.now), "requests": None, "auc": {}, "rollout": None,
                "threshold": None}
    )  # fmt: skip

    def done(outcome: str, message: str, kind: str = "Normal") -> bool:
        st.outcome, st.message = outcome, message
        s.router_training = st
        c.events.append((kind, f"RouterRetrain{outcome}", message))
        s.last_decision = f"router retraining: {message}"
        return False

    stable = c.stable_config
    if stable.router is None:
        return done("NotARouter", "the stable config has no router: nothing to retrain")
    active = c.target.status.active_rollout
    if active:
        # Not run: it runs once the LLMConfig is free (last_run unchanged). While its own
        # canary runs, the status goes on saying what started it.
        if active != previous.rollout:
            s.router_training = previous.model_copy(
                update={"outcome": "Waiting", "message": f"waits for Rollout {active} to end"}
            )
        return False
    where = training.recordings
    if where is None or not where.is_dir():
        return done(
            "NoRecordings",
            "the operator has no recordings directory (LLMOPT_RECORDINGS_DIR, the chart's "
            "recordings values) to retrain from",
            "Warning",
        )
    found = recordings.labelled_answers(
        where, c.namespace, c.target.name, stable.model, t.max_requests
    )
    if len(found.prompts) < t.min_requests:
        return done(
            "NotEnoughData",
            f"{found.summary()} of {stable.model} for {c.namespace}/{c.target.name}; "
            f"minRequests is {t.min_requests}",
        )
    core = client.CoreV1Api(c.custom.api_client)
    try:
        current = read_artifact(core, c.namespace, stable)
        answer = _child(
            {
                "prompts": found.prompts,
                "good": found.good,
                "answers": found.answers,
                "current": current,
                "threshold": float(stable.router.threshold),
            },
            training.timeout,
        )
    except (RouterArtifactProblem, RetrainFailed, OSError, ApiException) as exc:
        return done("Failed", f"retraining failed, the current router kept: {exc}", "Warning")
    rows = answer.get("rows")
    st.requests = rows if isinstance(rows, int) else len(found.prompts)
    raw_auc = answer.get("auc")
    auc = {k: float(v) for k, v in raw_auc.items()} if isinstance(raw_auc, dict) else None
    st.auc = {k: f"{v:.4f}" for k, v in (auc or {}).items()}
    verdict = router_retrain.judge(auc, t.min_auc_gain)
    if not verdict.canary:
        return done(verdict.outcome, f"{verdict.message} ({found.summary()})")
    threshold = answer.get("threshold")
    st.threshold = str(threshold) if threshold is not None else stable.router.threshold
    share = answer.get("escalated")
    if isinstance(share, int | float):
        verdict_message = (
            f"{verdict.message}; at threshold {st.threshold} it escalates "
            f"{100 * share:.1f}% of the recorded requests, as the current one does at "
            f"{stable.router.threshold}"
        )
    else:
        verdict_message = verdict.message
    return _publish(c, st, str(answer["artifact"]), verdict_message, done)


def _publish(
    c: CycleState,
    st: RouterTrainingStatus,
    text: str,
    verdict: str,
    done: Callable[..., bool],
) -> bool:
    """The retrained artifact written, and canaried (or recommended)."""
    stable = c.stable_config
    assert stable.router is not None
    digest = str(json.loads(text)["digest"])
    if digest == stable.router.artifact.digest:
        return done("NotBetter", "the retrained router is the current one (the same digest)")
    name = router_retrain.artifact_name(c.name, digest)
    core = client.CoreV1Api(c.custom.api_client)
    try:
        write_artifact(
            core, c.namespace, name, text, owner=c.body,
            labels={f"{GROUP}/policy": label_value(c.name)},
        )  # fmt: skip
    except ApiException as exc:
        return done("Failed", f"ConfigMap {name} not written: {exc.reason}", "Warning")
    st.digest, st.config_map = digest, name
    ref = RouterArtifactRef(name=name, digest=digest)
    router = stable.router.model_copy(
        update={"artifact": ref, "threshold": st.threshold or stable.router.threshold}
    )
    candidate = stable.model_copy(update={"router": router})
    said = f"{verdict}, on {st.requests} answers; the artifact is ConfigMap {name}"
    if c.spec.mode == "recommend":
        return done("Recommended", f"{said} (mode recommend: no Rollout)")
    free = rollouts.free_name(c.custom, c.namespace, f"{c.name}-retrain-v{c.stable.version}", 5)
    if free is None:
        return done("Failed", "five retraining Rollouts of this stable version ended already")
    rollout, running = free
    if running is None:
        c.create_rollout(rollout, candidate, steps=None, labels={LABEL_RETRAIN: "true"})
    st.rollout = rollout
    done("Canaried", f"{said}; Rollout {rollout} canaries it against the current router")
    c.status.state, c.status.message = "Deploying", c.status.last_decision
    return True
