"""The three kinds: names, models and printer columns in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import API_VERSION, CATEGORY, GROUP, VERSION, ApiModel
from .llmconfig import LLMConfigSpec, LLMConfigStatus
from .policy import OptimizationPolicySpec, OptimizationPolicyStatus
from .rollout import RolloutSpec, RolloutStatus


@dataclass(frozen=True)
class Kind:
    """A custom resource kind served by the operator."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[ApiModel]
    status_model: type[ApiModel]
    description: str
    printer_columns: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def group(self) -> str:
        return GROUP

    @property
    def version(self) -> str:
        return VERSION

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def fqname(self) -> str:
        """``plural.group``: unambiguous where Argo Rollouts or OpenKruise also serve it."""
        return f"{self.plural}.{GROUP}"

    @property
    def categories(self) -> tuple[str, ...]:
        return (CATEGORY,)


def _ready_columns() -> tuple[dict[str, Any], ...]:
    return (
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
    )


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

LLMCONFIG = Kind(
    kind="LLMConfig",
    plural="llmconfigs",
    singular="llmconfig",
    short_names=("llmc",),
    spec_model=LLMConfigSpec,
    status_model=LLMConfigStatus,
    description="The configuration of one LLM workload: provider, model, parameters, the "
    "ConfigMap and Deployment it drives, and its version history.",
    printer_columns=(
        {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Version", "type": "integer", "jsonPath": ".status.currentVersion"},
        {"name": "Hash", "type": "string", "jsonPath": ".status.currentHash", "priority": 1},
        {"name": "Rollout", "type": "string", "jsonPath": ".status.activeRollout"},
        *_ready_columns(),
        _AGE,
    ),
)

OPTIMIZATION_POLICY = Kind(
    kind="OptimizationPolicy",
    plural="optimizationpolicies",
    singular="optimizationpolicy",
    short_names=("optpol",),
    spec_model=OptimizationPolicySpec,
    status_model=OptimizationPolicyStatus,
    description="What better means for one LLMConfig: objectives, hard constraints, the "
    "search space, sampler, schedule, budgets, rules and mode.",
    printer_columns=(
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "State", "type": "string", "jsonPath": ".status.state"},
        {"name": "Trials", "type": "integer", "jsonPath": ".status.trials"},
        *_ready_columns(),
        _AGE,
    ),
)

ROLLOUT = Kind(
    kind="Rollout",
    plural="rollouts",
    singular="rollout",
    short_names=("llmro",),
    spec_model=RolloutSpec,
    status_model=RolloutStatus,
    description="One candidate LLM configuration tried against the stable one: canary steps, "
    "analysis, verdicts, promote or rollback.",
    printer_columns=(
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.currentStepIndex"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
        {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
        {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy", "priority": 1},
        _AGE,
    ),
)

ALL_KINDS: tuple[Kind, ...] = (LLMCONFIG, OPTIMIZATION_POLICY, ROLLOUT)
