"""LLMConfig: the configuration of one LLM workload and its version history."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from .common import (
    CONDITIONS_LIST_EXTENSIONS,
    ApiModel,
    Condition,
    DecimalString,
    Duration,
    FieldProblem,
    ObjectName,
    SecretKeyReference,
    parse_decimal,
)
from .steps import Analysis, Step
from .validation import parse_spec

ProviderName = Literal["openai", "anthropic", "google", "simulator", "replay"]
# Printable ASCII, no spaces: real model names ("gpt-4o-mini", "meta-llama/Llama-3.1-8B",
# "anthropic.claude-3-5-sonnet-v2:0", "ft:gpt-4o-mini:org::id") fit, while control and
# bidirectional characters that would make `kubectl get` show another name do not.
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[!-~]+$")]


def _check_range(value: str | None, low: str, high: str, field: str) -> str | None:
    if value is None:
        return value
    number = parse_decimal(value)
    if not parse_decimal(low) <= number <= parse_decimal(high):
        raise ValueError(f"{field} must be between {low} and {high}, got {value}")
    return value


class Parameters(ApiModel):
    """Generation parameters. Fractions are decimal strings, e.g. temperature "0.7"."""

    temperature: DecimalString | None = Field(
        default=None, description='Sampling temperature, "0" to "2".'
    )
    top_p: DecimalString | None = Field(
        default=None, description='Nucleus sampling mass, "0" to "1".'
    )
    top_k: int | None = Field(default=None, ge=1, le=1000, description="Top-k sampling.")
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Maximum output tokens."
    )
    presence_penalty: DecimalString | None = Field(
        default=None, description='Presence penalty, "-2" to "2".'
    )
    frequency_penalty: DecimalString | None = Field(
        default=None, description='Frequency penalty, "-2" to "2".'
    )
    stop: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None, max_length=8, description="Stop sequences."
    )
    seed: int | None = Field(default=None, ge=0, description="Sampling seed, where supported.")

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, v: str | None) -> str | None:
        return _check_range(v, "0", "2", "temperature")

    @field_validator("top_p")
    @classmethod
    def _top_p_range(cls, v: str | None) -> str | None:
        return _check_range(v, "0", "1", "topP")

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _penalty_range(cls, v: str | None) -> str | None:
        return _check_range(v, "-2", "2", "penalty")


class Endpoint(ApiModel):
    """Where an OpenAI-compatible or Anthropic provider is reached, and its key."""

    base_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)] | None
    ) = Field(default=None, description="Base URL of the provider API.")
    api_key_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="Secret key holding the API key; the key is mounted, never copied.",
    )
    ground_truth: bool | None = Field(
        default=None,
        description=(
            "Take the quality carried in this endpoint's answers (the llmopt.ground_truth "
            "field) as ground truth. Only the project's own simulator server "
            "(llm-optimizer simulator) sends it; any other endpoint's answers are never "
            "scored from their own content, whatever they carry."
        ),
    )


class RouterTarget(ApiModel):
    """The configuration a router escalates to."""

    provider: ProviderName = Field(description="Provider of the strong model.")
    model: ModelName = Field(description="The strong model.")
    parameters: Parameters = Field(default_factory=Parameters, description="Its parameters.")
    endpoint: Endpoint | None = Field(default=None, description="Its endpoint and key.")


class RouterArtifactRef(ApiModel):
    """A trained router (``llm-optimizer train-router``) in a ConfigMap of the namespace,
    pinned by its digest so that a changed artifact is a new configuration."""

    name: ObjectName = Field(description="ConfigMap holding the artifact.")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = (
        Field(default="router.json", description="Its key. Default: router.json.")
    )
    digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="The artifact's digest (its `digest` field, printed by train-router)."
    )


class RouterConfig(ApiModel):
    """Per-request routing: each request goes to this config's own model (the cheap one)
    or to ``strong``, by the trained router's chance that the cheap answer is good
    enough against ``threshold``."""

    mode: Literal["prompt", "cascade"] = Field(
        default="prompt",
        description="prompt: decide before any call; cascade: call the cheap model first "
        "and escalate from its answer (both calls paid on escalation).",
    )
    threshold: DecimalString = Field(
        description='The cheap model answers when the router gives it at least this chance '
        '("0" to "1"; higher sends more to strong).'
    )
    artifact: RouterArtifactRef = Field(description="The trained router.")
    strong: RouterTarget = Field(description="Where the other requests go.")

    @field_validator("threshold")
    @classmethod
    def _threshold_range(cls, v: str) -> str:
        checked = _check_range(v, "0", "1", "threshold")
        assert checked is not None
        return checked


class ModelConfig(ApiModel):
    """What one variant runs: provider, model, parameters. Hashed to identify it."""

    provider: ProviderName = Field(description="Provider that serves the model.")
    model: ModelName = Field(description="Model name as the provider knows it.")
    parameters: Parameters = Field(default_factory=Parameters, description="Generation parameters.")
    endpoint: Endpoint | None = Field(default=None, description="Provider endpoint and key.")
    router: RouterConfig | None = Field(
        default=None,
        description="Per-request routing between this model (the cheap one) and "
        "router.strong, by a trained router and a threshold.",
    )

    def config_hash(self) -> str:
        """A short, stable hash of what the variant runs (key order does not matter)."""
        canonical = json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class ConfigMapTarget(ApiModel):
    """The ConfigMap the operator renders for the gateway."""

    name: ObjectName | None = Field(
        default=None, description="ConfigMap name. Default: <llmconfig-name>-llm-config."
    )
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        default="variants.json", description="Key of the JSON document in the ConfigMap."
    )


class DeploymentTarget(ApiModel):
    """The app Deployment whose pods use this configuration."""

    name: ObjectName = Field(description="Deployment name in the same namespace.")


class Target(ApiModel):
    """What the configuration drives."""

    config_map: ConfigMapTarget = Field(
        default_factory=ConfigMapTarget, description="ConfigMap the gateway reads."
    )
    deployment: DeploymentTarget | None = Field(
        default=None,
        description="Deployment annotated with the config hash so its pods roll on promotion.",
    )


class Delivery(ApiModel):
    """How a change to this spec made by a person reaches traffic."""

    strategy: Literal["immediate", "canary"] = Field(
        default="immediate",
        description="immediate: render at once; canary: deliver through a Rollout the "
        "operator creates, so a person's change gets the same analysis as the optimizer's.",
    )
    steps: list[Step] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Steps of that Rollout. Default: the Rollout default.",
    )
    analysis: Analysis | None = Field(default=None, description="Its analysis settings.")
    max_rollbacks: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Delivery Rollouts and rules' config changes wait while this many of "
        "them rolled back within rollbackWindow (a rule's safety rollback never waits; "
        "optimizer trials are bounded by their policy's budgets). Default: 3.",
    )
    rollback_window: Duration = Field(default="1h", description="Default: 1h.")


class LLMConfigSpec(ModelConfig):
    """Desired configuration of one LLM workload."""

    target: Target = Field(default_factory=Target, description="What the configuration drives.")
    delivery: Delivery = Field(default_factory=Delivery, description="How spec changes ship.")
    history_limit: int = Field(
        default=20, ge=1, le=200, description="Versions kept in status.history. Default: 20."
    )

    def model_config_part(self) -> ModelConfig:
        """The part of the spec that defines what a variant runs."""
        return ModelConfig(
            provider=self.provider,
            model=self.model,
            parameters=self.parameters,
            endpoint=self.endpoint,
            router=self.router,
        )

    @model_validator(mode="after")
    def _endpoint_needed(self) -> LLMConfigSpec:
        if self.provider in ("openai", "anthropic", "google") and self.endpoint is None:
            # A default public endpoint would silently send traffic off-cluster; be explicit.
            raise FieldProblem("endpoint", f"required for provider {self.provider}")
        return self


class VersionRecord(ApiModel):
    """One version of the configuration, as kept in status.history."""

    version: int = Field(ge=1, description="Monotonic version number.")
    hash: str = Field(description="Config hash of what the version runs.")
    provider: ProviderName
    model: ModelName
    parameters: Parameters = Field(default_factory=Parameters)
    endpoint: Endpoint | None = None
    router: RouterConfig | None = None
    source: Annotated[str, StringConstraints(max_length=512)] = Field(
        description='Where the version came from: "spec" or "rollout/<name>".'
    )
    applied_at: str = Field(description="When it became stable (RFC 3339).")

    def model_config_part(self) -> ModelConfig:
        """What this version runs."""
        return ModelConfig(
            provider=self.provider,
            model=self.model,
            parameters=self.parameters,
            endpoint=self.endpoint,
            router=self.router,
        )


class QuarantineEntry(ApiModel):
    """A candidate config that failed on evidence."""

    hash: str
    model: ModelName
    rollout: str = Field(description="The Rollout that rolled it back.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    at: str = Field(description="When (RFC 3339).")


class LLMConfigStatus(ApiModel):
    """Observed state of an LLMConfig."""

    observed_generation: int | None = Field(default=None)
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_LIST_EXTENSIONS
    )
    current_version: int | None = Field(default=None, description="Stable version number.")
    current_hash: str | None = Field(default=None, description="Stable config hash.")
    spec_hash: str | None = Field(
        default=None, description="Config hash of the spec last recorded as a version."
    )
    config_map_name: str | None = Field(default=None, description="Rendered ConfigMap.")
    active_rollout: str | None = Field(default=None, description="Rollout in progress, if any.")
    delivering_rollout: str | None = Field(
        default=None, description="Rollout created to deliver the latest spec change."
    )
    history: list[VersionRecord] = Field(default_factory=list, description="Newest last.")
    quarantine: list[QuarantineEntry] = Field(
        default_factory=list,
        description="Candidates rolled back on evidence; not retried automatically.",
    )
    rollbacks: list[str] = Field(
        default_factory=list, description="When recent rollbacks happened (RFC 3339)."
    )
    message: str | None = Field(default=None, description="Summary for people.")


@dataclass(frozen=True)
class LLMConfigObject:
    """An LLMConfig as read from the API server, parsed once: its spec and status as
    models, the body kept for writes that need its metadata (owner, resourceVersion)."""

    body: dict[str, Any]
    spec: LLMConfigSpec
    status: LLMConfigStatus

    @classmethod
    def parse(cls, body: dict[str, Any]) -> LLMConfigObject:
        """Raises InvalidSpec naming the field when spec or status does not validate."""
        spec = parse_spec(LLMConfigSpec, body.get("spec"))
        status = parse_spec(LLMConfigStatus, dict(body.get("status") or {}), root="status")
        return cls(body=body, spec=spec, status=status)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace", ""))

    @property
    def stable(self) -> VersionRecord | None:
        """The current stable version (the newest history entry)."""
        return self.status.history[-1] if self.status.history else None

    @property
    def previous(self) -> VersionRecord | None:
        """The version before the stable one."""
        return self.status.history[-2] if len(self.status.history) >= 2 else None

    def quarantined(self) -> set[str]:
        """Hashes of candidates rolled back on evidence."""
        return {e.hash for e in self.status.quarantine}
