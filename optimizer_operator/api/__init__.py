"""The API of the three kinds: pydantic models, kinds, and CRD generation."""

from .common import API_VERSION, GROUP, VERSION, Condition
from .kinds import ALL_KINDS, LLMCONFIG, OPTIMIZATION_POLICY, ROLLOUT, Kind
from .llmconfig import LLMConfigSpec, LLMConfigStatus, ModelConfig
from .policy import OptimizationPolicySpec, OptimizationPolicyStatus
from .rollout import RolloutSpec, RolloutStatus

__all__ = [
    "ALL_KINDS",
    "API_VERSION",
    "GROUP",
    "LLMCONFIG",
    "OPTIMIZATION_POLICY",
    "ROLLOUT",
    "VERSION",
    "Condition",
    "Kind",
    "LLMConfigSpec",
    "LLMConfigStatus",
    "ModelConfig",
    "OptimizationPolicySpec",
    "OptimizationPolicyStatus",
    "RolloutSpec",
    "RolloutStatus",
]
