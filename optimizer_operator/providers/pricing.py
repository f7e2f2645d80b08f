"""The pricing catalog: USD per million tokens by model, as data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Price:
    """USD per 1M input and output tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Cost in USD of one request."""
        return float(
            (self.input_per_mtok * input_tokens + self.output_per_mtok * output_tokens)
            / Decimal(1_000_000)
        )


class PricingCatalog:
    """Model name -> Price. Unknown models cost 0 and are reported as unpriced."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = dict(prices)

    def price(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self._prices.get(model)
        return None if price is None else price.cost(input_tokens, output_tokens)

    def with_prices(self, prices: dict[str, Price]) -> PricingCatalog:
        return PricingCatalog({**self._prices, **prices})

    def models(self) -> list[str]:
        return sorted(self._prices)


def parse_prices(document: object, source: str) -> dict[str, Price]:
    """Prices from a catalog document; ValueError names the bad entry."""
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise ValueError(f"{source}: expected a mapping with a 'models' mapping")
    prices: dict[str, Price] = {}
    for model, entry in document["models"].items():
        try:
            prices[str(model)] = Price(Decimal(str(entry["input"])), Decimal(str(entry["output"])))
        except (KeyError, TypeError, ArithmeticError) as exc:
            raise ValueError(f"{source}: models.{model}: needs input and output prices") from exc
    return prices


def load_catalog(override: str | Path | None = None) -> PricingCatalog:
    """The default catalog, with entries from ``override`` (or $LLMOPT_PRICING) on top."""
    text = resources.files(__package__).joinpath("data/pricing.yaml").read_text()
    catalog = PricingCatalog(parse_prices(yaml.safe_load(text), "default pricing"))
    path = override or os.environ.get("LLMOPT_PRICING")
    if path:
        catalog = catalog.with_prices(
            parse_prices(yaml.safe_load(Path(path).read_text()), str(path))
        )
    return catalog
