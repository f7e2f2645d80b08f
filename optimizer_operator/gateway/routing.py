"""Per-request split: a stable hash of a sticky key picks a variant by weight."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from dataclasses import dataclass, field

from ..api.llmconfig import Parameters
from ..api.variants import TOTAL_WEIGHT, Variant, VariantSet
from ..providers import ChatRequest
from ..routers.model import Router


@dataclass(frozen=True)
class Route:
    """A router variant's routing: its trained router, threshold, and the two variants
    it sends to (both under the router variant's id, so every metric is its own)."""

    router: Router
    threshold: float
    cheap: Variant
    strong: Variant

    @property
    def mode(self) -> str:
        return self.router.mode

    @classmethod
    def of(cls, variant: Variant) -> Route:
        """The route of a router variant; ValueError when its artifact is unusable."""
        r = variant.router
        assert r is not None
        router = Router.loads(r.artifact)
        if router.mode != r.mode:
            raise ValueError(f"variant {variant.id}: its router is a {router.mode} router, "
                             f"the config says {r.mode}")  # fmt: skip
        plain = variant.model_copy(update={"router": None})
        strong = plain.model_copy(update={
            "provider": r.strong.provider, "model": r.strong.model,
            "parameters": r.strong.parameters, "endpoint": r.strong.endpoint,
        })  # fmt: skip
        return cls(router, float(r.threshold), plain, strong)

    def pick(self, prompt: str, cheap_answer: str | None = None) -> tuple[Variant, float]:
        """The variant to answer, and the router's chance that the cheap one suffices."""
        chance = self.router.score(prompt, cheap_answer)
        return (self.cheap if chance >= self.threshold else self.strong), chance


def bucket(key: str) -> int:
    """The key's bucket in [0, 10000): uniform, stable across processes and restarts."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % TOTAL_WEIGHT


@dataclass(frozen=True)
class RoutingTable:
    """An immutable snapshot of the live variants, swapped whole on reload."""

    variant_set: VariantSet
    _bounds: tuple[int, ...]
    _live: tuple[Variant, ...]
    mirror: Variant | None = None
    routes: dict[str, Route] = field(default_factory=dict)

    @classmethod
    def build(cls, variant_set: VariantSet) -> RoutingTable:
        """The table for ``variant_set``; ValueError when a router variant's artifact
        cannot be loaded (the caller keeps the last good table)."""
        bounds: list[int] = []
        live: list[Variant] = []
        total = 0
        for variant in variant_set.variants:
            if variant.weight == 0:
                continue
            total += variant.weight
            bounds.append(total)
            live.append(variant)
        mirror = next((v for v in variant_set.variants if v.mirror > 0), None)
        routes = {v.id: Route.of(v) for v in variant_set.variants if v.router is not None}
        return cls(variant_set, tuple(bounds), tuple(live), mirror, routes)

    @property
    def llm_config(self) -> str:
        return self.variant_set.llm_config

    @property
    def stable(self) -> Variant | None:
        """The stable variant (listed first), whatever its weight."""
        return next((v for v in self.variant_set.variants if v.role == "stable"), None)

    def pick(self, key: str) -> Variant:
        """The variant for ``key``: bucket b goes to the first variant whose cumulative
        weight exceeds b, so a weight of w basis points gets exactly w of 10000 buckets."""
        return self._live[bisect.bisect_right(self._bounds, bucket(key))]

    def mirror_for(self, key: str, served: Variant) -> Variant | None:
        """The variant that also gets a copy of this request, if any: ``mirror`` basis
        points of keys (hashed apart from the split, so the two are independent)."""
        m = self.mirror
        if m is None or m.id == served.id or bucket(key + "#mirror") >= m.mirror:
            return None
        return m


def request_as(
    creq: ChatRequest, variant: Variant, client_params: Parameters | None, suffix: str
) -> ChatRequest:
    """The same request as ``variant`` would serve it (its model, endpoint, and its own
    parameters over the client's), under a request id of its own (``suffix`` added): a
    mirror's copy, or stable's answer for a pairwise judgement."""
    params = (client_params or Parameters()).model_copy(
        update={k: v for k, v in variant.parameters.model_dump().items() if v is not None}
    )
    return dataclasses.replace(
        creq,
        model=variant.model,
        parameters=params,
        endpoint=variant.endpoint,
        request_id=creq.request_id + suffix,
        attempt=1,
    )
