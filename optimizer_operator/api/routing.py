"""Traffic routing through the Gateway API: an HTTPRoute's backend weights.

The Rollout names an existing ``HTTPRoute`` and two of its backends, the one that
serves the stable version and the one that serves the candidate; the operator writes
their ``weight`` in every rule of the route that sends traffic to the stable backend.
Backends are Services or InferencePools of the Gateway API Inference Extension.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import ApiModel, FieldProblem, ObjectName

GATEWAY_GROUP = "gateway.networking.k8s.io"
# Served versions of HTTPRoute, newest first: v1 since Gateway API 1.0, v1beta1 before.
HTTPROUTE_VERSIONS = ("v1", "v1beta1")
# InferencePool: GA group first, then the earlier alpha group of the inference extension.
INFERENCE_POOL_GROUPS = {
    "inference.networking.k8s.io": ("v1",),
    "inference.networking.x-k8s.io": ("v1alpha2",),
}


class BackendReference(ApiModel):
    """One backend of the route, as the route's ``backendRefs[]`` names it."""

    name: ObjectName = Field(description="The Service or InferencePool, same namespace.")
    kind: Literal["Service", "InferencePool"] = Field(
        default="Service", description="Service (default) or InferencePool."
    )
    group: str | None = Field(
        default=None,
        description='API group: "" for a Service (default); for an InferencePool '
        "inference.networking.k8s.io (default) or inference.networking.x-k8s.io.",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port, when the route's backendRef names one (matched when given).",
    )

    @model_validator(mode="after")
    def _group_fits_kind(self) -> BackendReference:
        if self.kind == "Service" and self.group not in (None, ""):
            raise FieldProblem("group", 'a Service is in the core group ("")')
        if self.kind == "InferencePool" and self.group not in (None, *INFERENCE_POOL_GROUPS):
            raise FieldProblem(
                "group", f"an InferencePool is in one of {', '.join(INFERENCE_POOL_GROUPS)}"
            )
        return self

    @property
    def api_group(self) -> str:
        if self.kind == "Service":
            return ""
        return self.group or "inference.networking.k8s.io"

    def matches(self, ref: dict[str, object]) -> bool:
        """Whether a route's backendRef (as stored) is this backend. The Gateway API's
        defaults apply: group "" and kind Service when the ref leaves them out."""
        group = str(ref.get("group") or "")
        kind = str(ref.get("kind") or "Service")
        if ref.get("name") != self.name or kind != self.kind or group != self.api_group:
            return False
        return self.port is None or ref.get("port") == self.port

    def describe(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.kind} {self.name}{port}"


class GatewayAPIRouting(ApiModel):
    """Where a Rollout with trafficRouting gatewayAPI writes its weights."""

    http_route: ObjectName = Field(
        description="The HTTPRoute (same namespace) whose backend weights the rollout sets."
    )
    stable_backend: BackendReference = Field(
        description="The backend that serves the stable version; all traffic at the end "
        "of an abort or rollback."
    )
    canary_backend: BackendReference = Field(
        description="The backend that serves the candidate. Every rule of the route that "
        "has the stable backend must list it too (at weight 0 before the rollout)."
    )
    after_promotion: Literal["canaryBackend", "stableBackend"] = Field(
        default="canaryBackend",
        description="Which backend takes all traffic once the candidate is promoted. "
        "canaryBackend (default): the canary backend serves the promoted version from "
        "then on (a pool per model, as with vLLM); the next rollout names it as its "
        "stableBackend. stableBackend: the stable backend's pods read the LLMConfig's "
        "ConfigMap, so the promoted version reaches them and the route goes back to them; "
        "the canary backend's pods read <configmap>-canary, which holds the candidate "
        "alone while the rollout runs.",
    )

    @model_validator(mode="after")
    def _two_backends(self) -> GatewayAPIRouting:
        if self.stable_backend.model_dump() == self.canary_backend.model_dump():
            raise FieldProblem("canaryBackend", "is the same backend as stableBackend")
        return self
