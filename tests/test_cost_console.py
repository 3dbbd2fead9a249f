"""The fleet console in the cost command: requests while someone has it open, and the pictures of new frames."""

from __future__ import annotations

import pytest

from cost_model.estimate import CONSOLE_PICTURES_PER_SITE, estimate_architecture
from cost_model.price_sets import load_price_set
from cost_model.scenario import Scenario


@pytest.fixture(scope="module")
def prices():  # type: ignore[no-untyped-def]
    return load_price_set("us-east-1-2026")


def site(sample_fps: float, **fields: object) -> Scenario:
    return Scenario(cameras=6, resolution="1920x1080", fps=25, masters=[1, 2], sample_fps=sample_fps, **fields)


def test_a_console_open_a_hundred_hours_is_priced_per_request_and_per_new_picture(prices) -> None:  # type: ignore[no-untyped-def]
    estimate = estimate_architecture("hybrid", site(0.5, console_viewer_hours=100, console_sites=2), prices)
    refreshes = 100 * 3600 / 15
    requests = refreshes * (1 + 3 * 2)  # /sites, then frames, alerts and events of each site
    assert estimate.item("Console API requests (HTTP API)").quantity == pytest.approx(requests)  # type: ignore[union-attr]
    assert estimate.item("Console Lambda requests").quantity == pytest.approx(requests)  # type: ignore[union-attr]
    # two masters at 0.5 frames/s: 15 new frames a refresh, more than the page shows
    pictures = estimate.item("Console picture GETs (S3)")
    assert pictures is not None and pictures.quantity == pytest.approx(refreshes * 2 * CONSOLE_PICTURES_PER_SITE)
    assert estimate.item("Console pictures out (data transfer)").usd > 0  # type: ignore[union-attr]
    assert any("Fleet console" in note for note in estimate.notes)


def test_a_quiet_site_fetches_only_its_few_new_pictures_and_no_console_costs_nothing(prices) -> None:  # type: ignore[no-untyped-def]
    quiet = estimate_architecture("hybrid", site(0.025, console_viewer_hours=100), prices)
    # 2 masters x 0.025 frames/s = 0.05 a second: 0.75 new pictures per 15 s refresh
    assert quiet.item("Console picture GETs (S3)").quantity == pytest.approx(100 * 240 * 0.75)  # type: ignore[union-attr]
    closed = estimate_architecture("hybrid", site(0.5), prices)
    assert not [item for item in closed.items if item.name.startswith("Console")]
