"""Generate CustomResourceDefinitions from the pydantic models.

Pydantic emits JSON Schema 2020-12 with ``$ref``/``$defs`` and ``anyOf`` for
optional fields; Kubernetes wants a *structural* OpenAPI v3.0 schema: every
node typed, no references, no ``anyOf`` of types. This module converts one to
the other so ``crds/`` has a single source of truth. The test cluster is
Kubernetes 1.20, so no CEL rules: OpenAPI keywords here, pydantic in the
operator for the rest.
"""

from __future__ import annotations

from typing import Any

import yaml

from .common import GROUP
from .kinds import ALL_KINDS, Kind

# Keywords structural schemas accept that we carry over from pydantic's output.
_KEEP = {
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        merged = dict(defs[name])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def to_structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:  # noqa: C901, PLR0912  one case per JSON-Schema keyword
    """Convert one pydantic JSON-Schema node into a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        inner = to_structural(options[0], defs)
        if node.get("description") and not inner.get("description"):
            inner["description"] = node["description"]
        return inner
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out["properties"] = {k: to_structural(v, defs) for k, v in value.items()}
        elif key == "items":
            out["items"] = to_structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = to_structural(value, defs)
            # `additionalProperties: false` is pydantic's extra="forbid"; the API
            # server prunes unknown fields anyway, and v1 CRDs reject the keyword.
        elif key in _KEEP:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out["type"] = "object"
    if "type" not in out:
        raise ValueError(f"untyped schema node: {node}")
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def model_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of a pydantic model, as the API server stores it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return to_structural(raw, defs)


def build_crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = model_schema(kind.spec_model)
    status_schema = model_schema(kind.status_model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.fqname,
            "labels": {"app.kubernetes.io/part-of": "llm-optimizer"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "versions": [
                {
                    "name": kind.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml(kind: Kind) -> str:
    """The YAML text committed under crds/ for one kind."""
    header = "# Generated by `make crds` from optimizer_operator/api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(kind), sort_keys=False, width=100)


def crd_filename(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


def render_all() -> dict[str, str]:
    """File name -> YAML text for every kind."""
    return {crd_filename(k): render_crd_yaml(k) for k in ALL_KINDS}
