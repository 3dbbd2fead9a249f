"""The thin uplink in the cost command: smaller records under a budget, the super-resolution endpoint and trainer,
the optional live channel."""

from __future__ import annotations

import pytest

from cost_model.estimate import estimate_architecture
from cost_model.price_sets import load_price_set
from cost_model.scenario import Scenario

HOURS = 24 * 30


@pytest.fixture(scope="module")
def prices():  # type: ignore[no-untyped-def]
    return load_price_set("us-east-1-2026")


def site(**fields: object) -> Scenario:
    return Scenario(cameras=6, resolution="1920x1080", fps=25, masters=[1, 2], sample_fps=0.5, **fields)


def test_an_uplink_budget_shrinks_each_record_to_its_share(prices) -> None:  # type: ignore[no-untyped-def]
    free = estimate_architecture("hybrid", site(), prices)
    thin = estimate_architecture("hybrid", site(uplink_kbps=64.0), prices)
    # 64 kbit/s over 2 masters x 0.5 frames/s: 8,000 bytes a frame, one 25 KiB PUT unit each instead of several
    assert site(uplink_kbps=64.0).uplink_jpeg_bytes(2) == pytest.approx(8000.0)
    assert thin.item("Kinesis PUT payload units").quantity < free.item("Kinesis PUT payload units").quantity  # type: ignore[union-attr]
    assert thin.item("S3 storage").usd < free.item("S3 storage").usd  # type: ignore[union-attr]


def test_super_resolution_prices_the_endpoint_the_trainer_and_the_patches(prices) -> None:  # type: ignore[no-untyped-def]
    estimate = estimate_architecture("hybrid", site(super_resolution=True), prices)
    endpoint = estimate.item("Super-resolution endpoint instance-hours")
    assert endpoint is not None and endpoint.quantity == HOURS and endpoint.usd == pytest.approx(HOURS * 0.204)
    assert estimate.item("Super-resolution trainer vCPU-hours").quantity == 2 * HOURS  # type: ignore[union-attr]
    assert estimate.item("S3 PUT requests (patch sets)").quantity == 2 * 360 * HOURS  # type: ignore[union-attr]
    assert estimate_architecture("hybrid", site(), prices).item("Super-resolution endpoint instance-hours") is None


def test_the_live_channel_prices_medialive_hours_and_viewer_egress(prices) -> None:  # type: ignore[no-untyped-def]
    estimate = estimate_architecture("hybrid", site(live_channel=True, live_bitrate_mbps=4.0, live_viewer_hours=1000), prices)
    assert estimate.item("MediaLive input hours (RTMP, HD)").quantity == HOURS  # type: ignore[union-attr]
    assert estimate.item("MediaLive output hours (HD AVC)").quantity == HOURS  # type: ignore[union-attr]
    egress = estimate.item("MediaPackage egress to viewers")
    assert egress is not None and egress.quantity == pytest.approx(4e6 / 8 * 3600 * 1000 / 1e9)
