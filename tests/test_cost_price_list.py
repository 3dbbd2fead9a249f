"""--refresh-prices parsing of AWS Price List API answers (botocore Stubber on a real pricing client)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber

from cost_model.price_sets import PriceSet
from hybridcam.cost.aws_price_list import refresh_prices


def product(dimensions: list[tuple[str, str, str]]) -> str:
    """A Price List product JSON string with on-demand (beginRange, endRange, USD) dimensions."""
    return json.dumps({
        "product": {"sku": "SKU1"},
        "terms": {"OnDemand": {"SKU1.T": {"priceDimensions": {
            f"SKU1.T.{i}": {"beginRange": b, "endRange": e, "unit": "Hrs", "pricePerUnit": {"USD": usd}}
            for i, (b, e, usd) in enumerate(dimensions)
        }}}},
    })


def price_set() -> PriceSet:
    common = dict(unit="u", region="us-east-1", source="https://aws.amazon.com/", taken="2026-01-01")
    return PriceSet.model_validate({
        "name": "t", "region": "us-east-1", "description": "test",
        "items": {
            "ec2.g4dn.xlarge": {**common, "description": "gpu", "price": 0.5,
                                "price_list": {"service_code": "AmazonEC2", "filters": {"instanceType": "g4dn.xlarge"}}},
            "lambda.gb_seconds": {**common, "description": "gbs", "price": 1.0,
                                  "price_list": {"service_code": "AWSLambda", "filters": {"group": "AWS-Lambda-Duration"}}},
            "sns.email": {**common, "description": "no query", "price": 2.0, "per": 100000},
            "ec2.ambiguous": {**common, "description": "two answers", "price": 9.0,
                              "price_list": {"service_code": "AmazonEC2", "filters": {"instanceType": "x"}}},
        },
    })


def test_refresh_updates_queryable_items_and_keeps_the_rest():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product([("0", "Inf", "0.5260000000")])]},
                          {"ServiceCode": "AmazonEC2", "MaxResults": 10,
                           "Filters": [{"Type": "TERM_MATCH", "Field": "instanceType", "Value": "g4dn.xlarge"}]})
        stub.add_response("get_products", {"PriceList": [product([
            ("6000000000", "15000000000", "0.0000150000"), ("0", "6000000000", "0.0000166667"),
            ("15000000000", "Inf", "0.0000133334"),
        ])]})
        stub.add_response("get_products", {"PriceList": [product([("0", "Inf", "1")]), product([("0", "Inf", "2")])]})
        refreshed, result = refresh_prices(price_set(), client=client, today=dt.date(2026, 11, 23))
        stub.assert_no_pending_responses()

    assert result.updated == ["ec2.g4dn.xlarge", "lambda.gb_seconds"]
    assert "matched 2 products" in result.failed["ec2.ambiguous"]
    gpu = refreshed.get("ec2.g4dn.xlarge")
    assert gpu.cost(720) == pytest.approx(378.72)
    assert gpu.taken == dt.date(2026, 11, 23) and "Price List API" in gpu.source
    gbs = refreshed.get("lambda.gb_seconds")
    assert [t.up_to for t in gbs.tiers] == [6e9, 15e9, None]  # sorted by beginRange
    assert gbs.cost(6e9 + 1) == pytest.approx(6e9 * 0.0000166667 + 0.000015)
    assert refreshed.get("sns.email").taken == dt.date(2026, 1, 1)  # untouched
    assert refreshed.get("ec2.ambiguous").cost(1) == pytest.approx(9.0)  # kept the file figure
