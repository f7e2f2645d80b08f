"""Weights in a Gateway API HTTPRoute: read the route, check its backends, set the split.

The rollout owns only the ``weight`` of its two backends, in the rules that send
traffic to the stable backend; everything else in the route (matches, filters, other
rules, parents) is the route owner's and is written back as it was read. Writes are a
compare-and-set on the route's resourceVersion, so a person's concurrent edit is never
overwritten with a stale copy: the next tick reads it and decides again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.routing import (
    GATEWAY_GROUP,
    HTTPROUTE_VERSIONS,
    INFERENCE_POOL_GROUPS,
    BackendReference,
    GatewayAPIRouting,
)
from .configmap import REQUEST_TIMEOUT


class RouteProblem(Exception):
    """The route or a backend cannot carry the split; ``field`` is the Rollout's field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Route:
    """An HTTPRoute as read: its body and the API version that served it."""

    body: dict[str, Any]
    version: str

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def read_route(custom: client.CustomObjectsApi, namespace: str, name: str) -> Route | None:
    """The route, from the newest served HTTPRoute version; None when it does not exist."""
    for version in HTTPROUTE_VERSIONS:
        try:
            body = custom.get_namespaced_custom_object(
                GATEWAY_GROUP, version, namespace, "httproutes", name,
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                continue  # this version is not served, or there is no such route
            raise
        return Route(dict(body), version)
    return None


def managed_rules(route: Route, routing: GatewayAPIRouting) -> list[int]:
    """Indices of the rules whose weights the rollout sets: those with the stable backend.
    Each must also list the canary backend and nothing else (else the weights would not
    be the percents the rollout means)."""
    rules = (route.body.get("spec") or {}).get("rules") or []
    out: list[int] = []
    for i, rule in enumerate(rules):
        refs = rule.get("backendRefs") or []
        if not any(routing.stable_backend.matches(r) for r in refs):
            continue
        if not any(routing.canary_backend.matches(r) for r in refs):
            raise RouteProblem(
                "gatewayAPI.canaryBackend",
                f"HTTPRoute {route.name} rule {i} sends traffic to "
                f"{routing.stable_backend.describe()} but does not list "
                f"{routing.canary_backend.describe()}; add it with weight 0",
            )
        others = [
            r for r in refs
            if not routing.stable_backend.matches(r) and not routing.canary_backend.matches(r)
        ]  # fmt: skip
        if others:
            raise RouteProblem(
                "gatewayAPI.httpRoute",
                f"HTTPRoute {route.name} rule {i} has backends besides stable and canary "
                f"({', '.join(str(r.get('name')) for r in others)}); their weights would "
                "dilute the split",
            )
        out.append(i)
    if not out:
        raise RouteProblem(
            "gatewayAPI.stableBackend",
            f"HTTPRoute {route.name} has no rule with backendRef "
            f"{routing.stable_backend.describe()}",
        )
    return out


def _weight(ref: dict[str, Any]) -> int:
    return int(ref.get("weight", 1))  # the Gateway API's default weight is 1


def weights(route: Route, routing: GatewayAPIRouting) -> list[tuple[int, int]]:
    """(stable, canary) weights of each managed rule, as the route has them now."""
    rules = route.body["spec"]["rules"]
    out = []
    for i in managed_rules(route, routing):
        refs = rules[i]["backendRefs"]
        stable = sum(_weight(r) for r in refs if routing.stable_backend.matches(r))
        canary = sum(_weight(r) for r in refs if routing.canary_backend.matches(r))
        out.append((stable, canary))
    return out


def canary_percent(route: Route, routing: GatewayAPIRouting) -> int | None:
    """The canary's share of the managed rules in percent, if all rules agree; None when
    they differ or carry no weight at all."""
    shares = {(c * 100) // (s + c) if s + c else -1 for s, c in weights(route, routing)}
    return shares.pop() if len(shares) == 1 and -1 not in shares else None


def with_split(route: Route, routing: GatewayAPIRouting, canary: int) -> dict[str, Any]:
    """The route's rules with stable at ``100 - canary`` and canary at ``canary``."""
    rules = copy.deepcopy(route.body["spec"]["rules"])
    for i in managed_rules(route, routing):
        for ref in rules[i]["backendRefs"]:
            if routing.canary_backend.matches(ref):
                ref["weight"] = canary
            elif routing.stable_backend.matches(ref):
                ref["weight"] = 100 - canary
    return {"rules": rules}


def set_split(
    custom: client.CustomObjectsApi,
    namespace: str,
    routing: GatewayAPIRouting,
    canary: int,
    route: Route | None = None,
) -> bool:
    """Write the split (canary percent) into the route; True when the route changed.
    Compare-and-set on resourceVersion: a 409 (someone wrote in between) is raised for
    the next tick to read the route again."""
    route = route or read_route(custom, namespace, routing.http_route)
    if route is None:
        raise RouteProblem(
            "gatewayAPI.httpRoute", f"HTTPRoute {routing.http_route} not found in {namespace}"
        )
    spec = with_split(route, routing, canary)
    if spec["rules"] == route.body["spec"]["rules"]:
        return False
    custom.patch_namespaced_custom_object(
        GATEWAY_GROUP, route.version, namespace, "httproutes", route.name,
        {"metadata": {"resourceVersion": route.body["metadata"]["resourceVersion"]},
         "spec": spec},
        _request_timeout=REQUEST_TIMEOUT,
    )  # fmt: skip
    return True


def backend_exists(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    backend: BackendReference,
) -> bool:
    """Whether the Service or InferencePool the route names exists."""
    try:
        if backend.kind == "Service":
            core.read_namespaced_service(backend.name, namespace, _request_timeout=REQUEST_TIMEOUT)
            return True
        for version in INFERENCE_POOL_GROUPS[backend.api_group]:
            try:
                custom.get_namespaced_custom_object(
                    backend.api_group, version, namespace, "inferencepools", backend.name,
                    _request_timeout=REQUEST_TIMEOUT,
                )  # fmt: skip
                return True
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return False
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
