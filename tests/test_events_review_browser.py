"""The review page in Debian's Chromium (Playwright), behind the dashboard's token and CSP.

Events come from replaying the real one-by-one footage through the events pipeline twice: 15 minutes
ago (rule walk-in, three visitors, with clips) and 65 minutes ago (rule poster, the unmasked false
person). The page must filter to one rule, play an event's clip, open an event from the link a
notification carries, and jump 10 minutes earlier to show the older events.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from devstack.servers import free_port
from services.events.replay import replay_file
from tests.fixtures.servers import wait_until_answers
from tests.test_dashboard_browser import chromium_page, wait_for  # noqa: F401 (fixture)
from tests.test_events_footage import FPS, VIDEO, room_site

TOKEN = "review-test-token"


@pytest.fixture(scope="module")
def stored_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("review")
    with gzip.open(VIDEO.with_name("one-by-one-person-detection.detections.json.gz"), "rt") as stream:
        reference = json.load(stream)["reference"]
    now = time.time()
    recent = room_site([{"name": "walk-in", "zone": "floor", "severity": "high"}])
    replay_file(VIDEO, reference, recent.events, recent.scene("room"), root / "events", now - 15 * 60, FPS)
    older = room_site([{"name": "poster", "zone": "poster", "severity": "low"}])
    replay_file(VIDEO, reference[:300], older.events, older.scene("room"), root / "events", now - 65 * 60, FPS)
    site = root / "site.yaml"
    site.write_text(json.dumps({"site": "review", "cameras": [{"id": "room", "source": "synthetic", "role": "master",
                                                                "zones": {"floor": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]},
                                                                "masks": [[[0, 0], [0.6, 0], [0.6, 0.6], [0, 0.6]]]}]}))
    return root / "events", site


def test_review_filters_to_a_rule_plays_a_clip_and_jumps_ten_minutes_earlier(
        redis_server, stored_events, tmp_path: Path, chromium_page: Page) -> None:  # noqa: F811
    events_dir, site = stored_events
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site),
                "HYBRIDCAM_DASHBOARD_EVENTS_DIR": str(events_dir), "HYBRIDCAM_DASHBOARD_TOKEN": TOKEN})
    dashboard = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                                 stdout=(tmp_path / "dashboard.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", dashboard, tmp_path / "dashboard.log")
        assert httpx.get(f"{url}/api/events").status_code == 401  # behind the token like every other route
        page = chromium_page
        page.goto(f"{url}/review?token={TOKEN}")
        wait_for(page, "document.querySelectorAll('#event-list li[data-event]').length === 3", 15_000)
        assert page.locator("#f-rule option").all_inner_texts() == ["all", "poster", "walk-in"]

        page.select_option("#f-rule", "walk-in")  # filter to one rule
        wait_for(page, "[...document.querySelectorAll('#event-list li[data-event]')].every(li => li.dataset.rule === 'walk-in')", 10_000)
        assert page.locator(".timeline[data-camera=room] .marker.sev-high").count() == 3
        assert page.locator(".timeline[data-camera=room] .activity").count() > 5

        page.locator("#event-list li[data-event]").first.click()  # play its clip
        wait_for(page, "(() => { const v = document.querySelector('#clip'); return !v.hidden && v.readyState >= 2 && v.currentTime > 0.5; })()",
                 20_000)
        assert page.evaluate("document.querySelector('#clip').error") is None
        assert page.evaluate("document.querySelector('#clip').videoWidth") == 768
        selected = page.evaluate("location.pathname")
        assert selected.startswith("/events/")

        page.select_option("#f-rule", "")
        until = float(page.locator("#window-text").get_attribute("data-until"))
        page.click("#earlier")  # jump to a time 10 minutes earlier: the 65-minute-old events come into view
        wait_for(page, f"Number(document.querySelector('#window-text').dataset.until) < {until - 599}", 10_000)
        assert float(page.locator("#window-text").get_attribute("data-until")) == pytest.approx(until - 600, abs=1)
        wait_for(page, "document.querySelectorAll('#event-list li[data-rule=poster]').length > 0", 10_000)

        page.goto(f"{url}{selected}")  # the link a notification carries opens that event
        wait_for(page, f"document.querySelector('#event-list li.selected')?.dataset.event === '{selected.rsplit('/', 1)[1]}'", 10_000)
        assert "walk-in on room" in page.locator("#player-title").inner_text()
        assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0  # CSP: no inline script
        page.screenshot(path=str(tmp_path / "review.png"))

        page.goto(f"{url}/")  # the live page draws the camera's zone over its tile
        wait_for(page, "document.querySelectorAll('figure[data-camera=room] svg.boxes polygon.zone').length === 1", 15_000)
        assert page.evaluate("document.querySelector('figure[data-camera=room] polygon.zone title').textContent") == "zone floor"
        assert page.locator("figure[data-camera=room] svg.boxes polygon.mask").count() == 1
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=15)
