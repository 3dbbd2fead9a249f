"""Every price in the default set at its tier boundaries, and the tier model itself."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cost_model.price_sets import PriceItem, load_price_set

EXACT = 1e-9


@pytest.fixture(scope="module")
def prices():
    return load_price_set("us-east-1-2026")


def cost(prices, key: str, quantity: float) -> float:
    return prices.get(key).cost(quantity)


@pytest.mark.parametrize(
    ("images", "usd"),
    [
        (0, 0.0),
        (1, 0.001),
        (1_000_000, 1_000.0),  # end of tier 1: 1.00 per 1,000
        (1_000_001, 1_000.0008),  # first image of tier 2: 0.80 per 1,000
        (5_000_000, 1_000.0 + 4_000_000 * 0.0008),  # end of tier 2: 4,200
        (35_000_000, 4_200.0 + 30_000_000 * 0.0006),  # end of tier 3: 22,200
        (35_001_000, 22_200.0 + 1_000 * 0.00025),  # into the last tier: 0.25 per 1,000
    ],
)
def test_rekognition_image_tiers(prices, images, usd):
    assert cost(prices, "rekognition.detect_labels", images) == pytest.approx(usd, abs=EXACT)


def test_lambda_requests_and_gb_second_tiers(prices):
    assert cost(prices, "lambda.requests", 1_000_000) == pytest.approx(0.20, abs=EXACT)
    assert cost(prices, "lambda.gb_seconds", 6_000_000_000) == pytest.approx(6e9 * 0.0000166667, rel=1e-12)
    above = cost(prices, "lambda.gb_seconds", 6_000_000_001) - cost(prices, "lambda.gb_seconds", 6_000_000_000)
    assert above == pytest.approx(0.000015, rel=1e-6)
    at_15b = 6e9 * 0.0000166667 + 9e9 * 0.000015
    assert cost(prices, "lambda.gb_seconds", 15_000_000_000) == pytest.approx(at_15b, rel=1e-12)
    beyond = cost(prices, "lambda.gb_seconds", 15_000_001_000) - at_15b
    assert beyond == pytest.approx(1000 * 0.0000133334, rel=1e-6)


def test_dynamodb_on_demand_units_reflect_the_2024_11_01_halving(prices):
    assert cost(prices, "dynamodb.write_request_unit", 1_000_000) == pytest.approx(0.625, abs=EXACT)
    assert cost(prices, "dynamodb.read_request_unit", 1_000_000) == pytest.approx(0.125, abs=EXACT)
    assert "2024-11-01" in prices.get("dynamodb.write_request_unit").note


def test_kinesis_shard_hours_put_payload_units_and_on_demand(prices):
    assert cost(prices, "kinesis.shard_hour", 720) == pytest.approx(10.80, abs=EXACT)
    assert cost(prices, "kinesis.put_payload_unit", 1_000_000) == pytest.approx(0.014, abs=EXACT)
    assert prices.get("kinesis.put_payload_unit").unit_bytes == 25 * 1024
    assert cost(prices, "kinesis.on_demand_stream_hour", 1) == pytest.approx(0.04, abs=EXACT)
    assert cost(prices, "kinesis.on_demand_ingest_gb", 1) == pytest.approx(0.08, abs=EXACT)
    assert "10 MiB" in prices.get("kinesis.shard_hour").note


def test_s3_put_and_storage_tiers(prices):
    assert cost(prices, "s3.put_request", 1_000) == pytest.approx(0.005, abs=EXACT)
    assert cost(prices, "s3.storage_gb_month", 50_000) == pytest.approx(50_000 * 0.023, abs=EXACT)
    assert cost(prices, "s3.storage_gb_month", 50_001) == pytest.approx(1_150 + 0.022, abs=EXACT)
    assert cost(prices, "s3.storage_gb_month", 500_000) == pytest.approx(1_150 + 450_000 * 0.022, abs=EXACT)
    assert cost(prices, "s3.storage_gb_month", 500_001) == pytest.approx(11_050 + 0.021, abs=EXACT)


def test_sns_sms_per_message_and_email_per_100k(prices):
    assert cost(prices, "sns.email", 100_000) == pytest.approx(2.00, abs=EXACT)
    assert cost(prices, "sns.email", 1) == pytest.approx(0.00002, abs=EXACT)
    assert cost(prices, "sns.sms_us", 10) == pytest.approx(0.0581, abs=EXACT)
    assert prices.get("sns.sms_us").unsure


def test_api_gateway_http_tiers(prices):
    assert cost(prices, "apigateway.http_request", 300_000_000) == pytest.approx(300.0, abs=EXACT)
    assert cost(prices, "apigateway.http_request", 301_000_000) == pytest.approx(300.9, abs=EXACT)


def test_kvs_per_gb_and_instance_hourly(prices):
    assert cost(prices, "kvs.ingest_gb", 100) == pytest.approx(0.85, abs=EXACT)
    assert cost(prices, "ec2.g4dn.xlarge", 720) == pytest.approx(378.72, abs=EXACT)
    assert cost(prices, "sagemaker.ml.m5.xlarge", 1) == pytest.approx(0.23, abs=EXACT)


def test_every_figure_has_unit_region_source_and_date(prices):
    for key, item in prices.items.items():
        assert item.unit and item.region == "us-east-1", key
        assert item.source.startswith("https://aws.amazon.com/"), key
        assert item.taken.year >= 2025, key


def test_quantity_for_cost_inverts_the_tiers(prices):
    rekognition = prices.get("rekognition.detect_labels")
    assert rekognition.quantity_for_cost(1_000.0) == pytest.approx(1_000_000)
    assert rekognition.quantity_for_cost(4_200.0) == pytest.approx(5_000_000)
    assert rekognition.quantity_for_cost(1_400.0) == pytest.approx(1_500_000)


def test_tiers_must_increase_and_end_open():
    base = dict(description="d", unit="u", region="r", source="s", taken="2026-01-01")
    with pytest.raises(ValidationError, match="increase"):
        PriceItem(**base, tiers=[{"up_to": 10, "price": 1}, {"up_to": 5, "price": 1}, {"up_to": None, "price": 1}])
    with pytest.raises(ValidationError, match="open-ended"):
        PriceItem(**base, tiers=[{"up_to": 10, "price": 1}])
    assert PriceItem(**base, price=2.0, per=1000).cost(500) == pytest.approx(1.0)
