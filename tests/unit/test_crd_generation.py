"""crds/ is generated from the models, structural, and kept in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from optimizer_operator.api import ALL_KINDS, ROLLOUT
from optimizer_operator.api.crd import build_crd, crd_filename, render_all

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_a_fresh_generation() -> None:
    rendered = render_all()
    committed = {p.name for p in CRDS.glob("*.yaml")}
    assert committed == set(rendered), "crds/ holds files the generator does not make"
    for name, text in rendered.items():
        assert (CRDS / name).read_text() == text, f"{name} is stale: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, child in node.get("properties", {}).items():
            out += _walk(child, f"{path}.{key}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schemas_are_structural() -> None:
    for kind in ALL_KINDS:
        schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "type" in node, f"{kind.kind}{path} has no type"
            for banned in ("$ref", "anyOf", "oneOf", "allOf", "x-kubernetes-validations"):
                assert banned not in node, f"{kind.kind}{path} uses {banned}"


def test_names_group_and_category() -> None:
    for kind in ALL_KINDS:
        crd = yaml.safe_load((CRDS / crd_filename(kind)).read_text())
        assert crd["metadata"]["name"] == f"{kind.plural}.optimizer.llmops.dev"
        assert crd["spec"]["names"]["categories"] == ["llmopt"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    short = {k.kind: k.short_names for k in ALL_KINDS}
    assert short == {
        "LLMConfig": ("llmc",),
        "OptimizationPolicy": ("optpol",),
        "Rollout": ("llmro",),
    }


def test_rollout_printer_columns() -> None:
    columns = [
        c["name"]
        for c in build_crd(ROLLOUT)["spec"]["versions"][0]["additionalPrinterColumns"]
        if c.get("priority", 0) == 0
    ]
    assert columns == ["Target", "Phase", "Step", "Weight", "Verdict", "Age"]


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    for kind in ALL_KINDS:
        status = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "status"
        ]
        conditions = status["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_fractions_are_strings_in_spec() -> None:
    schema = build_crd(ROLLOUT)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert node.get("type") != "number", f"Rollout{path} is a float in the API"
