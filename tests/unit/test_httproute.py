"""The HTTPRoute split as pure functions on route objects, and the Rollout's gatewayAPI
fields as the API refuses them. Routes are shaped as the Gateway API documents them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from optimizer_operator.act.httproute import (
    Route,
    RouteProblem,
    canary_percent,
    managed_rules,
    weights,
    with_split,
)
from optimizer_operator.api.rollout import RolloutSpec
from optimizer_operator.api.routing import GatewayAPIRouting
from optimizer_operator.api.validation import InvalidSpec, parse_spec

POOL = "inference.networking.k8s.io"


def _routing(**extra: Any) -> GatewayAPIRouting:
    return GatewayAPIRouting.model_validate(
        {"httpRoute": "chat", "stableBackend": {"name": "a"}, "canaryBackend": {"name": "b"},
         **extra}
    )  # fmt: skip


def _route(*rules: list[dict[str, Any]]) -> Route:
    body = {
        "metadata": {"name": "chat", "resourceVersion": "7"},
        "spec": {"rules": [{"backendRefs": refs} for refs in rules]},
    }
    return Route(body, "v1")


def test_weights_go_only_to_the_two_backends_in_the_rules_that_have_stable() -> None:
    route = _route(
        [{"name": "a", "port": 80}, {"name": "b", "port": 80, "weight": 0}],
        [{"name": "other"}],
        [{"name": "a", "weight": 3}, {"group": "", "kind": "Service", "name": "b", "weight": 0}],
    )
    before = copy.deepcopy(route.body)
    assert managed_rules(route, _routing()) == [0, 2]
    rules = with_split(route, _routing(), 25)["rules"]
    assert [r.get("weight") for r in rules[0]["backendRefs"]] == [75, 25]
    assert rules[1] == {"backendRefs": [{"name": "other"}]}  # untouched, no weight added
    assert [r["weight"] for r in rules[2]["backendRefs"]] == [75, 25]
    assert route.body == before  # the route as read is not changed in place
    # No weight in a ref is the Gateway API's default, 1.
    assert weights(route, _routing()) == [(1, 0), (3, 0)]
    assert canary_percent(_route([{"name": "a", "weight": 60}, {"name": "b", "weight": 40}]),
                          _routing()) == 40  # fmt: skip


def test_a_backend_matches_by_kind_group_and_port_when_given() -> None:
    pools = _routing(
        stableBackend={"kind": "InferencePool", "name": "a"},
        canaryBackend={"kind": "InferencePool", "name": "b"},
    )
    service_named_a = _route([{"name": "a"}, {"name": "b"}])
    with pytest.raises(RouteProblem) as err:
        managed_rules(service_named_a, pools)
    assert err.value.field == "gatewayAPI.stableBackend"
    route = _route(
        [{"group": POOL, "kind": "InferencePool", "name": "a"},
         {"group": POOL, "kind": "InferencePool", "name": "b"}]
    )  # fmt: skip
    assert managed_rules(route, pools) == [0]
    ported = _routing(stableBackend={"name": "a", "port": 8000})
    two = _route([{"name": "a", "port": 9000}, {"name": "b"}], [{"name": "a", "port": 8000},
                                                               {"name": "b"}])  # fmt: skip
    assert managed_rules(two, ported) == [1]


@pytest.mark.parametrize(
    ("rules", "field", "says"),
    [
        ([[{"name": "x"}]], "gatewayAPI.stableBackend", "no rule with backendRef Service a"),
        ([[{"name": "a"}]], "gatewayAPI.canaryBackend", "does not list Service b"),
        ([[{"name": "a"}, {"name": "b"}, {"name": "c"}]], "gatewayAPI.httpRoute",
         r"backends besides stable and canary \(c\)"),
    ],
)  # fmt: skip
def test_a_route_that_cannot_carry_the_split_is_refused_naming_the_field(
    rules: list[list[dict[str, Any]]], field: str, says: str
) -> None:
    with pytest.raises(RouteProblem, match=says) as err:
        managed_rules(_route(*rules), _routing())
    assert err.value.field == field


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "targetRef": {"name": "bot"},
        "candidate": {"provider": "simulator", "model": "sim-small"},
        **extra,
    }


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"trafficRouting": "gatewayAPI"}, "spec.gatewayAPI", "needs spec.gatewayAPI"),
        ({"gatewayAPI": {"httpRoute": "r", "stableBackend": {"name": "a"},
                         "canaryBackend": {"name": "b"}}},
         "spec.gatewayAPI", "only valid with trafficRouting gatewayAPI"),
        ({"trafficRouting": "gatewayAPI",
          "gatewayAPI": {"httpRoute": "r", "stableBackend": {"name": "a"},
                         "canaryBackend": {"name": "a"}}},
         "spec.gatewayAPI.canaryBackend", "same backend"),
        ({"trafficRouting": "gatewayAPI",
          "gatewayAPI": {"httpRoute": "r", "stableBackend": {"name": "a", "group": "apps"},
                         "canaryBackend": {"name": "b"}}},
         "spec.gatewayAPI.stableBackend.group", "core group"),
        ({"trafficRouting": "gatewayAPI", "strategy": "blueGreen",
          "gatewayAPI": {"httpRoute": "r", "stableBackend": {"name": "a"},
                         "canaryBackend": {"name": "b"}}},
         "spec.blueGreen.preview", "mirroring is the gateway's"),
    ],
)  # fmt: skip
def test_the_rollouts_gateway_api_fields_are_checked(
    extra: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(InvalidSpec, match=says) as err:
        parse_spec(RolloutSpec, _spec(**extra))
    assert err.value.field == field


def test_blue_green_by_weight_and_a_canary_route_through_the_gateway_api() -> None:
    routing = {"httpRoute": "r", "stableBackend": {"name": "a"}, "canaryBackend": {"name": "b"}}
    spec = parse_spec(
        RolloutSpec,
        _spec(trafficRouting="gatewayAPI", gatewayAPI=routing, strategy="blueGreen",
              blueGreen={"preview": "split", "previewWeight": 10}),
    )  # fmt: skip
    assert spec.gateway_api is not None
    assert spec.to_wire()["gatewayAPI"]["afterPromotion"] == "canaryBackend"
