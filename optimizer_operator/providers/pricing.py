"""The pricing catalog: USD per million tokens by model, as data."""

from __future__ import annotations

import json
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


MILLION = Decimal(1_000_000)


def _is_litellm(document: object) -> bool:
    """LiteLLM's cost map (model_prices_and_context_window.json): model -> an entry with
    ``input_cost_per_token`` / ``output_cost_per_token`` in USD per token."""
    return isinstance(document, dict) and "models" not in document and any(
        isinstance(v, dict) and "input_cost_per_token" in v for v in document.values()
    )


def parse_litellm(document: dict[str, object], source: str) -> dict[str, Price]:
    """Prices from LiteLLM's cost map. Entries without both per-token costs (embeddings,
    images, its ``sample_spec``) are skipped; a ``provider/model`` key is also known by
    its bare model name unless the map has that name itself."""
    prices: dict[str, Price] = {}
    aliases: dict[str, Price] = {}
    for model, entry in document.items():
        if not isinstance(entry, dict) or model == "sample_spec":
            continue
        costs = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if any(c is None or isinstance(c, bool) for c in costs):
            continue
        try:
            price = Price(*(Decimal(str(c)) * MILLION for c in costs))
        except ArithmeticError:
            raise ValueError(f"{source}: {model}: costs per token are not numbers") from None
        if price.input_per_mtok < 0 or price.output_per_mtok < 0:
            raise ValueError(f"{source}: {model}: a negative cost per token")
        prices[str(model)] = price
        if "/" in str(model):
            aliases.setdefault(str(model).rsplit("/", 1)[-1], price)
    if not prices:
        raise ValueError(f"{source}: no entry with input_cost_per_token and output_cost_per_token")
    return {**aliases, **prices}


def parse_prices(document: object, source: str) -> dict[str, Price]:
    """Prices from a catalog document (ours, or LiteLLM's cost map); ValueError names the
    bad entry."""
    if _is_litellm(document):
        assert isinstance(document, dict)
        return parse_litellm(document, source)
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise ValueError(
            f"{source}: expected a mapping with a 'models' mapping, or LiteLLM's cost map "
            "(model -> input_cost_per_token, output_cost_per_token)"
        )
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
        catalog = catalog.with_prices(parse_prices(_read(Path(path)), str(path)))
    return catalog


def _read(path: Path) -> object:
    """A catalog file: JSON (LiteLLM's map is JSON, and YAML would read 1e-06 as text)
    or YAML."""
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: neither JSON nor YAML: {exc}".splitlines()[0]) from None
