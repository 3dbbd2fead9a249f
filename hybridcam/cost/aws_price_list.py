"""`--refresh-prices`: current figures from the AWS Price List API (boto3 `pricing`), when credentials exist.

Only items whose YAML entry carries a `price_list` query (service_code + TERM_MATCH filters) are
refreshed; the rest keep their file figures. A refreshed item gets today's date and the API as source.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cost_model.price_sets import PriceItem, PriceSet, Tier

PRICE_LIST_REGION = "us-east-1"  # the Price List API endpoint; it answers for every region


@dataclass
class RefreshResult:
    updated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def aws_credentials_available() -> bool:
    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return False


def _tiers_from_product(product_json: str) -> list[Tier]:
    product = json.loads(product_json)
    dimensions: list[dict[str, Any]] = []
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        dimensions.extend(term.get("priceDimensions", {}).values())
    if not dimensions:
        raise ValueError("no on-demand price in the answer")
    dimensions.sort(key=lambda d: float(d.get("beginRange", "0")))
    tiers = []
    for dimension in dimensions:
        end = dimension.get("endRange", "Inf")
        tiers.append(Tier(up_to=None if end == "Inf" else float(end), price=float(dimension["pricePerUnit"]["USD"])))
    return tiers


def _query(client: Any, spec: dict[str, Any]) -> list[str]:
    filters = [{"Type": "TERM_MATCH", "Field": k, "Value": str(v)} for k, v in spec.get("filters", {}).items()]
    answer = client.get_products(ServiceCode=spec["service_code"], Filters=filters, MaxResults=10)
    return list(answer.get("PriceList", []))


def refresh_prices(prices: PriceSet, client: Any | None = None, today: dt.date | None = None) -> tuple[PriceSet, RefreshResult]:
    """A copy of `prices` with every queryable item refreshed; failures keep the file figure."""
    client = client or boto3.client("pricing", region_name=PRICE_LIST_REGION)
    today = today or dt.date.today()
    result = RefreshResult()
    items: dict[str, PriceItem] = dict(prices.items)
    for key, item in prices.items.items():
        if not item.price_list:
            continue
        try:
            products = _query(client, item.price_list)
            if len(products) != 1:
                raise ValueError(f"the query matched {len(products)} products, expected 1")
            tiers = _tiers_from_product(products[0])
            items[key] = item.model_copy(
                update={
                    "tiers": tiers,
                    "per": 1.0,
                    "taken": today,
                    "source": f"AWS Price List API ({item.price_list['service_code']})",
                    "unsure": False,
                }
            )
            result.updated.append(key)
        except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
            result.failed[key] = str(exc)
    return prices.model_copy(update={"items": items}), result
