"""The fleet console in Chromium: two sites, their servers' health (one server silent: stale), cloud frames
stored through the detector function (pictures load from S3) and alerts; the page signs in with a token."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.fixtures.cloud import CloudResources
from tests.fixtures.fleet import detector_function, heartbeat, put_event, running_console, send, send_frames
from tests.test_dashboard_browser import chromium_page, wait_for  # noqa: F401  (the fixture is used by name)

TOKEN = "fleet-browser-token-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"


@pytest.mark.slow
def test_the_console_shows_two_sites_with_health_frames_and_alerts(cloud_resources: CloudResources, chromium_page: Page) -> None:  # noqa: F811
    started = time.monotonic()
    function = detector_function(cloud_resources)
    now = time.time()
    send(function, heartbeat("harbour", "edge-1", now - 5, cameras=("quay", "gate")).encode(),
         heartbeat("harbour", "edge-2", now - 200, cameras=("yard",)).encode(),  # silent for over 3 intervals
         heartbeat("depot", "edge-1", now - 3, cameras=("dock",)).encode())
    send_frames(function, "harbour", ["quay", "gate"], per_camera=2, start_ts=now - 120)
    send_frames(function, "depot", ["dock"], per_camera=2, start_ts=now - 60)
    put_event(cloud_resources, "depot", "dock", "ev-7", now - 30, "intrusion")

    page = chromium_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    pictures: list[str] = []
    page.on("request", lambda request: pictures.append(request.url) if request.resource_type == "image" else None)
    with running_console(cloud_resources, TOKEN) as url:
        page.goto(url + "/")
        assert page.locator("#login").is_visible()  # nothing is shown before signing in
        page.fill("#token", TOKEN)
        page.click("#login button[type=submit]")
        wait_for(page, "document.body.dataset.loaded === 'true'", timeout=20_000)
        assert not page.locator("#login").is_visible()

        assert page.locator("section.site").evaluate_all("s => s.map(e => e.dataset.site)") == ["depot", "harbour"]
        harbour = page.locator("section.site[data-site=harbour]")
        servers = harbour.locator("tr.server").evaluate_all("rows => rows.map(r => [r.dataset.server, r.dataset.state])")
        assert servers == [["edge-1", "ok"], ["edge-2", "stale"]]
        assert "quay: ok" in harbour.locator("tr.server[data-server=edge-1] td.cameras").inner_text()
        assert page.locator("section.site[data-site=depot] tr.server").evaluate_all("r => r.map(e => e.dataset.state)") == ["ok"]

        assert harbour.locator("figure.frame").count() == 4
        assert page.locator("section.site[data-site=depot] figure.frame").count() == 2
        wait_for(page, "[...document.querySelectorAll('figure.frame img')].every(i => i.complete && i.naturalWidth === 640)",
                 timeout=20_000)
        assert sorted(harbour.locator("li.alert").all_inner_texts())[0].startswith("Person on gate")
        assert harbour.locator("li.alert").count() == 2
        assert page.locator("section.site[data-site=depot] li.alert").count() == 1
        assert "intrusion (warning) on dock" in page.locator("section.site[data-site=depot] li.event").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "fleet-console.png"), full_page=True)

        # a refresh fetches the pictures of new frames only
        assert len(pictures) == 6
        send_frames(function, "depot", ["dock"], per_camera=3, start_ts=now - 60)  # seq 3 is new (1 and 2 stored)
        page.click("#refresh")
        wait_for(page, "document.querySelectorAll('section.site[data-site=depot] figure.frame').length === 3",
                 timeout=20_000)
        wait_for(page, "[...document.querySelectorAll('figure.frame img')].every(i => i.complete && i.naturalWidth === 640)",
                 timeout=20_000)
        assert len(pictures) == 7, pictures

        # a token the API refuses signs the page out
        page.evaluate("sessionStorage.setItem('fleet-token', 'wrong')")
        page.goto(url + "/#token=wrong")
        wait_for(page, "!document.getElementById('login').hidden", timeout=10_000)
        assert page.locator("section.site").count() == 0
        assert "#token" not in page.url  # the token does not stay in the address bar
    assert errors == []
    assert time.monotonic() - started < 60
