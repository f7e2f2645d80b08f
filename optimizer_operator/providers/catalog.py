"""What the operator and the gateway know of models before measuring them: list prices
(the pricing catalog, $LLMOPT_PRICING on top, and the simulator fleet's own prices)
and which models the simulator fleet serves."""

from __future__ import annotations

import functools
from pathlib import Path

from .pricing import PricingCatalog, load_catalog
from .simulator import fleet_prices, load_fleet


def price_catalog(override: str | Path | None = None) -> PricingCatalog:
    """The pricing catalog (``override`` or $LLMOPT_PRICING on top of the default) with
    the simulator fleet's prices: what the gateway charges each request at."""
    return load_catalog(override).with_prices(fleet_prices(load_fleet()))


@functools.cache
def known_prices() -> PricingCatalog:
    """``price_catalog()`` read once: what the operator knows of a model's price before
    measuring it."""
    return price_catalog()


def list_price(key: str) -> float | None:
    """A model key's (``provider/model``) input + output price per 1M tokens, or None
    when the catalog does not know the model."""
    price = known_prices().price(key.split("/", 1)[-1])
    return None if price is None else float(price.input_per_mtok + price.output_per_mtok)


@functools.cache
def fleet_models() -> frozenset[str]:
    """The simulator fleet's model names (read once per process)."""
    return frozenset(load_fleet().models)
