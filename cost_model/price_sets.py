"""Price sets: loading the versioned YAML files and the tiered price model.

A price item is a list of tiers. Each tier covers the monthly quantity up to `up_to`
(cumulative, in the item's unit; null for "and above") and costs `price` per `per` units.
A flat price is a single tier with no upper bound.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PRICE_SET_DIR = Path(__file__).parent / "prices"


class PriceSetError(ValueError):
    """A price set cannot be found or does not validate; the message is one sentence for the user."""


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    up_to: float | None = Field(None, gt=0, description="cumulative monthly quantity this tier ends at; null = no end")
    price: float = Field(..., ge=0, description="USD per `per` units inside this tier")


class PriceItem(BaseModel):
    """One priced dimension (for example Lambda GB-seconds) with its provenance."""

    model_config = ConfigDict(extra="forbid")

    description: str
    unit: str
    per: float = Field(1.0, gt=0, description="the tier prices are per this many units (1,000,000 for 'per million')")
    region: str
    source: str
    taken: dt.date
    note: str = ""
    unsure: bool = False
    unit_bytes: int | None = Field(None, gt=0, description="bytes in one billing unit, where the unit is a chunk")
    price_list: dict[str, object] | None = Field(
        None, description="AWS Price List API query (service_code + filters) used by --refresh-prices"
    )
    tiers: list[Tier]

    @model_validator(mode="before")
    @classmethod
    def _flat_price_is_one_tier(cls, data: object) -> object:
        if isinstance(data, dict) and "price" in data:
            data = dict(data)
            if "tiers" in data:
                raise ValueError("give either price or tiers, not both")
            data["tiers"] = [{"up_to": None, "price": data.pop("price")}]
        return data

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend_and_end_open(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("needs at least one tier")
        bounds = [t.up_to for t in tiers[:-1] if t.up_to is not None]
        if len(bounds) != len(tiers) - 1:
            raise ValueError("only the last tier may be open-ended")
        if tiers[-1].up_to is not None:
            raise ValueError("the last tier must be open-ended (up_to: null)")
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            raise ValueError("tier bounds must increase")
        return tiers

    def cost(self, quantity: float) -> float:
        """USD for `quantity` units in one month, walking the tiers."""
        if quantity <= 0:
            return 0.0
        total = 0.0
        lower = 0.0
        for tier in self.tiers:
            upper = tier.up_to if tier.up_to is not None else float("inf")
            in_tier = min(quantity, upper) - lower
            if in_tier <= 0:
                break
            total += in_tier * tier.price / self.per
            lower = upper
        return total

    def quantity_for_cost(self, usd: float) -> float | None:
        """The monthly quantity whose tiered cost equals `usd`; None if no quantity costs that much."""
        if usd <= 0:
            return 0.0
        spent = 0.0
        lower = 0.0
        for tier in self.tiers:
            rate = tier.price / self.per
            upper = tier.up_to if tier.up_to is not None else float("inf")
            tier_cost = (upper - lower) * rate
            if spent + tier_cost >= usd:
                return lower + (usd - spent) / rate if rate > 0 else None
            spent += tier_cost
            lower = upper
        return None

    @property
    def first_rate(self) -> float:
        return self.tiers[0].price / self.per


class PriceSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    region: str
    currency: str = "USD"
    description: str
    items: dict[str, PriceItem]

    def get(self, key: str) -> PriceItem | None:
        return self.items.get(key)

    @property
    def taken_range(self) -> tuple[dt.date, dt.date]:
        dates = [item.taken for item in self.items.values()]
        return min(dates), max(dates)

    def provenance_line(self) -> str:
        oldest, newest = self.taken_range
        when = oldest.isoformat() if oldest == newest else f"{oldest.isoformat()} to {newest.isoformat()}"
        unsure = sum(1 for item in self.items.values() if item.unsure)
        extra = f"; {unsure} figure(s) marked unsure" if unsure else ""
        return f"prices: set '{self.name}' ({self.region}, {self.currency}), figures taken {when}{extra}"


def available_price_sets() -> list[str]:
    return sorted(path.stem for path in PRICE_SET_DIR.glob("*.yaml"))


def price_set_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} and candidate.exists():
        return candidate
    bundled = PRICE_SET_DIR / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    raise PriceSetError(
        f"price set {name_or_path!r} not found; bundled sets are: {', '.join(available_price_sets())}"
    )


def load_price_set(name_or_path: str) -> PriceSet:
    path = price_set_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PriceSetError(f"price set file {path.name} is not valid YAML: {exc}") from None
    try:
        return PriceSet.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PriceSetError(f"price set file {path.name}: {where}: {first['msg']}") from None
