"""Hostile and generated specs through the real API server.

Objects are generated (hypothesis) from the CRDs' OpenAPI schemas, which `make crds`
writes from the pydantic models, so the generator follows the models. For every object:

- the API server either refuses it (422) with a message naming a field under ``spec``,
- or keeps it: every field sent comes back (no silent pruning), and the operator's own
  reconcile either accepts it or sets ``Ready=False``, reason ``InvalidSpec``, with a
  message naming the field.

Valid objects must never be refused by the server. Hostile objects are valid ones with one
value replaced by something nasty: oversized strings, odd unicode, NaN-like strings,
negative or out-of-range numbers, empty lists, unknown names. The reconcile runs in this
process on the object as the server returned it (the same function the kopf handler
calls), with the session's operator stopped so that this reconcile is the only writer
(the operator racing it for the same ConfigMap made a run flaky; that race itself is
tested in test_cluster_object_faults.py); the named cases at the end also go through the
operator process.

Examples are derandomized so that CI runs the same ones every time; `make fuzz` runs many
more with fresh randomness.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client

from optimizer_operator.act.outcome import Outcome
from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.observe.prometheus import BUILTIN
from optimizer_operator.reconcile.llmconfig import reconcile_llmconfig
from optimizer_operator.reconcile.policy import run_cycle
from optimizer_operator.reconcile.rollout import reconcile_rollout
from tests.conftest import wait_for
from tests.faults.objects import create_llmconfig

pytestmark = [pytest.mark.faults, pytest.mark.cluster]

CRDS = Path(__file__).resolve().parents[2] / "crds"
EXAMPLES = int(os.environ.get("LLMOPT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("LLMOPT_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KINDS = {
    "llmconfigs": "LLMConfig",
    "rollouts": "Rollout",
    "optimizationpolicies": "OptimizationPolicy",
}

# The shipped samples (config/samples/): one fully valid object of each kind.
SAMPLES = {
    plural: yaml.safe_load(
        (CRDS.parent / "config" / "samples" / f"{kind.lower()}.yaml").read_text()
    )["spec"]
    for plural, kind in KINDS.items()
}

HOSTILE: list[Any] = [
    "",
    "x" * 70_000,  # oversized
    "\u202eevil\u202c",  # right-to-left override
    "zero\u200bwidth\u200d",
    "\U0001f642" * 200,
    "nul\x00byte",
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "1e400",
    "-0",
    "0x10",
    "1_000",
    " 0.5 ",
    "bogus-sampler",
    -1,
    -100,
    101,
    10**12,
    3.5,
    True,
    [],
    {},
]


def spec_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"{GROUP}_{plural}.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _decimal(low: float, high: float) -> st.SearchStrategy[str]:
    return st.integers(int(low * 100), int(high * 100)).map(lambda n: f"{n / 100:g}")


# Rules the schema cannot say (cross-field, ranges of decimal strings, metric names): most
# draws for these properties follow them, so that generated objects reach the
# accepted path too, not only InvalidSpec.
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "metric": st.sampled_from(sorted(BUILTIN)),
    "temperature": _decimal(0, 2),
    "topP": _decimal(0, 1),
    "presencePenalty": _decimal(-2, 2),
    "frequencyPenalty": _decimal(-2, 2),
    "searchSpace": st.fixed_dictionaries(
        {
            "models": st.lists(
                st.fixed_dictionaries(
                    {
                        "provider": st.just("simulator"),
                        "model": st.sampled_from(["sim-small", "sim-medium", "sim-large"]),
                    }
                ),
                min_size=1,
                max_size=3,
            )
        }
    ),
    "objectives": st.lists(
        st.sampled_from(sorted(BUILTIN)), min_size=1, max_size=3, unique=True
    ).map(lambda ms: [{"metric": m, "direction": "minimize", "weight": "1"} for m in ms]),
    "windows": st.lists(st.sampled_from(["5m", "1h", "24h"]), min_size=1, max_size=3),
    "rollbackTriggers": st.just([]),
    "schedule": st.fixed_dictionaries(
        {"triggers": st.just([{"type": "interval", "every": "1h"}])},
        optional={"cooldown": st.sampled_from(["1m", "30m"])},
    ),
}
STEP = st.one_of(
    st.fixed_dictionaries({"setWeight": st.integers(0, 100)}),
    st.fixed_dictionaries(
        {"pause": st.fixed_dictionaries({}, optional={"duration": st.just("5s")})}
    ),
    st.fixed_dictionaries(
        {"analysis": st.fixed_dictionaries({}, optional={"measurements": st.integers(1, 5)})}
    ),
)


def from_schema(schema: dict[str, Any], depth: int = 0, name: str = "") -> st.SearchStrategy[Any]:
    """Values the schema allows (a subset: what our CRDs use)."""
    plain = _plain(schema, depth)
    if name in HINTS:  # three draws in four follow the hint
        return st.one_of(HINTS[name], HINTS[name], HINTS[name], plain)
    if name == "steps":
        steps = st.lists(STEP, min_size=1, max_size=3)
        return st.one_of(steps, steps, steps, plain)
    return plain


def _plain(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not props:
            if isinstance(extra, dict):
                key = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
                return st.dictionaries(key, from_schema(extra, depth + 1), max_size=2)
            return st.just({})
        required = set(schema.get("required") or [])
        optional = {k: v for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(
            {k: from_schema(props[k], depth + 1, k) for k in sorted(required)},
            optional={}
            if depth > 4
            else {k: from_schema(v, depth + 1, k) for k, v in optional.items()},
        )
    if kind == "array":
        low = int(schema.get("minItems", 0))
        high = max(low, min(int(schema.get("maxItems", 3)), 3))
        return st.lists(from_schema(schema["items"], depth + 1), min_size=low, max_size=high)
    if kind == "string":
        low, high = int(schema.get("minLength", 0)), int(schema.get("maxLength", 40))
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: low <= len(s) <= high
            )
        return st.text(min_size=low, max_size=min(high, 24))
    if kind == "integer":
        return st.integers(
            min_value=schema.get("minimum", -1000), max_value=schema.get("maximum", 100_000)
        )
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum", -1e6),
            max_value=schema.get("maximum", 1e6),
            allow_nan=False,
        )
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"schema construct not handled by the generator: {schema}")


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (objects, list items and scalars)."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += leaves(v, (*path, i))
    return out


def replaced(value: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    out = copy.deepcopy(value)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return out


def kept(sent: Any, back: Any) -> bool:
    """Everything sent is in what came back (the server may add defaults, never drop)."""
    if isinstance(sent, dict):
        return isinstance(back, dict) and all(
            k in back and kept(v, back[k]) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(back, list)
            and len(sent) == len(back)
            and all(kept(a, b) for a, b in zip(sent, back, strict=True))
        )
    return bool(sent == back)


def _reconcile(plural: str, api: client.ApiClient) -> Callable[[dict[str, Any]], Outcome]:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    if plural == "llmconfigs":
        return lambda body: reconcile_llmconfig(body, core=core, apps=apps, custom=custom)
    if plural == "rollouts":
        return lambda body: reconcile_rollout(
            body, core=core, apps=apps, custom=custom, source=None
        )
    return lambda body: run_cycle(body, custom=custom, source=None)


def _ready(outcome: Outcome) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == "Ready")


def check_round_trip(
    api: client.ApiClient, namespace: str, plural: str, spec: Any, *, valid: bool
) -> str:
    """Create, compare, reconcile, delete; returns what happened (for the report)."""
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KINDS[plural],
        "metadata": {"generateName": "h-", "namespace": namespace},
        "spec": spec,
    }
    try:
        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    except client.ApiException as exc:
        assert not valid, f"the server refused an object its own schema allows: {exc.body}"
        assert exc.status == 422, exc.body
        assert "spec." in (exc.body or ""), f"the refusal names no field: {exc.body}"
        return "refused by the API server"
    name = created["metadata"]["name"]
    try:
        back = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        assert kept(spec, back["spec"]), f"fields pruned: sent {spec!r}, got {back['spec']!r}"
        ready = _ready(_reconcile(plural, api)(back))
        if ready["reason"] == "InvalidSpec":
            assert ready["status"] == "False"
            assert ready["message"].startswith("spec"), ready["message"]
            if os.environ.get("LLMOPT_FUZZ_SHOW"):
                print("INVALID", plural, ready["message"][:300])
            return "InvalidSpec"
        return "accepted"
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("plural", sorted(KINDS))
def test_generated_objects_are_kept_whole_or_refused_naming_the_field(
    api: client.ApiClient, crds_installed: None, sole_operator: None, namespace: str, plural: str
) -> None:
    schema = spec_schema(plural)
    seen: set[str] = set()

    @FUZZ
    @example(SAMPLES[plural])  # the shipped sample: always one fully valid object
    @given(from_schema(schema))
    def valid(spec: dict[str, Any]) -> None:
        seen.add(check_round_trip(api, namespace, plural, spec, valid=True))

    valid()
    assert "refused by the API server" not in seen
    assert "accepted" in seen, f"no generated {plural} reached the accepted path: {seen}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("plural", sorted(KINDS))
def test_hostile_values_are_refused_naming_the_field_or_kept_whole(
    api: client.ApiClient, crds_installed: None, sole_operator: None, namespace: str, plural: str
) -> None:
    schema = spec_schema(plural)
    seen: set[str] = set()

    @FUZZ
    @given(from_schema(schema), st.data())
    def hostile(spec: dict[str, Any], data: st.DataObject) -> None:
        paths = leaves(spec)
        if not paths:
            return
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(st.sampled_from(HOSTILE), label="value")
        seen.add(check_round_trip(api, namespace, plural, replaced(spec, path, value), valid=False))

    hostile()
    # The mix must reach both refusal paths, or the property proved little.
    assert "refused by the API server" in seen, seen


LLMC = {"provider": "simulator", "model": "sim-medium"}
CANDIDATE = {"provider": "simulator", "model": "sim-small"}
POLICY = {
    "targetRef": {"name": "bot"},
    "objectives": [{"metric": "cost_per_request_usd", "direction": "minimize"}],
    "searchSpace": {"models": [{"provider": "simulator", "model": "sim-small"}]},
}

NAMED: list[tuple[str, str, dict[str, Any], str]] = [
    ("oversized model", "llmconfigs", {**LLMC, "model": "m" * 5000}, "spec.model"),
    ("odd unicode model", "llmconfigs", {**LLMC, "model": "gpt\u202e-4o"}, "spec.model"),
    (
        "NaN temperature",
        "llmconfigs",
        {**LLMC, "parameters": {"temperature": "NaN"}},
        "spec.parameters.temperature",
    ),
    (
        "infinite temperature",
        "llmconfigs",
        {**LLMC, "parameters": {"temperature": "Infinity"}},
        "spec.parameters.temperature",
    ),
    (
        "negative weight",
        "rollouts",
        {"targetRef": {"name": "bot"}, "candidate": CANDIDATE, "steps": [{"setWeight": -5}]},
        "spec.steps[0].setWeight",
    ),
    (
        "weight over 100",
        "rollouts",
        {"targetRef": {"name": "bot"}, "candidate": CANDIDATE, "steps": [{"setWeight": 150}]},
        "spec.steps[0].setWeight",
    ),
    (
        "empty steps",
        "rollouts",
        {"targetRef": {"name": "bot"}, "candidate": CANDIDATE, "steps": []},
        "spec.steps",
    ),
    (
        "unknown sampler",
        "optimizationpolicies",
        {**POLICY, "sampler": {"name": "bogus-sampler"}},
        "spec.sampler.name",
    ),
    (
        "bandit over a continuous space",
        "optimizationpolicies",
        {
            **POLICY,
            "strategy": "bandit",
            "searchSpace": {
                "parameters": [
                    {"name": "temperature", "type": "float", "low": "0.1", "high": "0.9"}
                ]
            },
        },
        "spec.strategy",
    ),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("case", "plural", "spec", "field"), NAMED, ids=[c[0] for c in NAMED])
def test_named_hostile_inputs_name_their_field_where_the_user_looks(
    api: client.ApiClient,
    operator: Path,
    namespace: str,
    case: str,
    plural: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    """Through the operator process: a 422 from the API server naming the field, or the
    CR's Ready=False/InvalidSpec condition naming it."""
    custom = client.CustomObjectsApi(api)
    if plural == "optimizationpolicies":  # a Ready target, so only the spec can be wrong
        create_llmconfig(custom, namespace, "bot", LLMC)
        wait_for(
            lambda: (
                custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "llmconfigs", "bot"
                ).get("status")
                or {}
            ).get("currentHash"),
            60,
            "LLMConfig bot rendered",
        )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KINDS[plural],
        "metadata": {"name": "hostile", "namespace": namespace},
        "spec": spec,
    }
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    except client.ApiException as exc:
        # The API server names list items without their index (spec.steps.setWeight).
        assert exc.status == 422 and re.sub(r"\[\d+\]", "", field) in (exc.body or ""), exc.body
        return

    def condition() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "hostile")
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), None)

    ready = wait_for(condition, 60, f"a Ready condition on the {case} object")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec"), ready
    assert field in ready["message"], ready["message"]
