"""Types shared by the three kinds: names, fractions as strings, durations, conditions.

Fractions travel as decimal strings in spec ("0.7"), never floats, so what a
person writes is what the API server stores and what GitOps tools diff.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GROUP = "optimizer.llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "llmopt"

# The metrics the gateway's series give without a query (their PromQL lives in
# observe/prometheus.py); any other metric name needs one.
BUILTIN_METRICS = (
    "error_rate",
    "latency_p95_seconds",
    "cost_per_request_usd",
    "quality_score",
    "win_rate",
    "stable_similarity",
)
# Metrics of a candidate against stable, with the value stable has against itself (not
# measured): a policy cannot make them an objective, which its stable baseline is
# measured on.
PAIRED_METRICS = {"win_rate": 0.5, "stable_similarity": 1.0}

# A decimal written as a string: "0.7", "1", "-0.5", "12.25".
DECIMAL_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,9})?$"
# A Go-style duration: "30s", "5m", "1h30m", "2d" (d is ours: days are common in budgets).
DURATION_PATTERN = r"^([0-9]{1,6}(ms|s|m|h|d))+$"
# RFC 1123 label, the shape of most Kubernetes object names we reference.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

DecimalString = Annotated[str, StringConstraints(pattern=DECIMAL_PATTERN, max_length=24)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
ObjectName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=253)]

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_DURATION_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``"1h30m"``; raises ValueError on bad input."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h30m, 2d)")
    return sum(int(n) * _DURATION_UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def parse_decimal(text: str) -> Decimal:
    """The Decimal in a decimal string; raises ValueError on bad input."""
    if not re.fullmatch(DECIMAL_PATTERN, text):
        raise ValueError(f"not a decimal string: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern rules this out
        raise ValueError(f"not a decimal string: {text!r}") from exc


class FieldProblem(ValueError):
    """A cross-field check's error that names the field to fix, relative to the model."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as it is stored in Kubernetes (camelCase, no None)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: ObjectName = Field(description="Name of the object in the same namespace.")


class SecretKeyReference(ApiModel):
    """A key in a Secret in the same namespace. Secrets are referenced, never copied."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key within the Secret."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observed condition, as in Kubernetes' metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="Type of the condition, e.g. Ready."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = Field(
        description="A CamelCase word for why the condition is what it is."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        default="", description="What happened, for a person."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation this condition was computed from."
    )
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")


CONDITIONS_LIST_EXTENSIONS: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
