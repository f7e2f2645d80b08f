"""The ConfigMap contract between the operator and the gateway.

One JSON document per LLMConfig: the live variants, stable first, each with an
integer weight; weights sum to 10000 (basis points) so the gateway's
per-request split is exact.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import API_VERSION, ApiModel
from .llmconfig import Endpoint, ModelName, Parameters, ProviderName, RouterTarget

TOTAL_WEIGHT = 10000


def stable_variant_id(version: int | object) -> str:
    """The variant id of a stable version in the ConfigMap and in every metric: ``v3``."""
    return f"v{version}"


def canary_variant_id(config_hash: str) -> str:
    """The variant id of a candidate: ``canary-`` and the first 8 of its config hash."""
    return f"canary-{config_hash[:8]}"


class VariantRouter(ApiModel):
    """A router variant's routing, as the gateway needs it: the trained router itself
    (the artifact's JSON, inlined by the operator from its ConfigMap), the threshold,
    and the strong target (the variant's own model is the cheap one)."""

    mode: Literal["prompt", "cascade"]
    threshold: str
    strong: RouterTarget
    artifact: str = Field(max_length=1 << 20, description="The router artifact (JSON).")


class Variant(ApiModel):
    """One live configuration and its share of traffic."""

    id: str = Field(description='Config version id, e.g. "v3", or "candidate-<hash>".')
    role: Literal["stable", "candidate"]
    hash: str
    weight: int = Field(ge=0, le=TOTAL_WEIGHT, description="Basis points of traffic.")
    mirror: int = Field(
        default=0,
        ge=0,
        le=TOTAL_WEIGHT,
        description="Basis points of requests copied to this variant (answered by another; "
        "the copy's answer is scored and dropped).",
    )
    provider: ProviderName
    model: ModelName
    parameters: Parameters = Field(default_factory=Parameters)
    endpoint: Endpoint | None = None
    router: VariantRouter | None = None


class VariantSet(ApiModel):
    """The document the gateway reads."""

    api_version: Literal["optimizer.llmops.dev/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["VariantSet"] = "VariantSet"
    llm_config: str
    namespace: str
    rollout: str | None = Field(default=None, description="Rollout that set these weights.")
    variants: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> VariantSet:
        total = sum(v.weight for v in self.variants)
        if total != TOTAL_WEIGHT:
            raise ValueError(f"variant weights sum to {total}, not {TOTAL_WEIGHT}")
        roles = [v.role for v in self.variants]
        if "stable" in roles and roles[0] != "stable":
            # A candidate-only set is a replica-based canary's own ConfigMap.
            raise ValueError("the first variant must be the stable one")
        return self
