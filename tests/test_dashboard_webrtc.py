"""The WebRTC live view in a real headless Chromium, against real capture, compositor and dashboard.

Capture (two synthetic cameras) and the compositor (its encoded program on the h264 output,
and the MJPEG preview) run as processes on a real redis-server; the dashboard relays the
compositor's own H.264 over aiortc. The page must connect and play, the token is required,
a second viewer plays alongside, closing the viewers brings the server's sender count back
to zero, a single camera can be watched, and a page whose WebRTC cannot connect shows MJPEG
and says so. Viewer pages are served under a strict Content-Security-Policy (no inline script).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from devstack.servers import LocalRedis, free_port
from tests.fixtures.pipeline import ServiceRunner, write_site
from tests.fixtures.servers import wait_until_answers
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, wait_for

TOKEN = "webrtc-test-token"
PROGRAM_W, PROGRAM_H = 640, 360
# Frame rings are named after the camera: ids of their own keep this test off any other site on the host.
WIDE, LEFT = f"rtcwide{os.getpid()}", f"rtcleft{os.getpid()}"
CAMERAS = [
    {"id": WIDE, "role": "master", "source": "synthetic"},
    {"id": LEFT, "role": "slave", "source": "synthetic", "covers": {"master": WIDE, "region": [0.0, 0.0, 0.6, 1.0]}},
]
FRAMES_SHOWN = """(v) => new Promise((resolve) => {
  let frames = 0; const start = performance.now();
  const count = () => { frames += 1; if (performance.now() - start < 2000) v.requestVideoFrameCallback(count); else resolve(frames); };
  v.requestVideoFrameCallback(count);
})"""


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("webrtc")
    redis = LocalRedis(data_dir=root / "redis", appendonly=False)
    redis.data_dir.mkdir()
    redis.start()
    h264_port, mjpeg_port, port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1",
                "HYBRIDCAM_SITE_FILE": str(write_site(root / "site.yaml", fps=10, width=640, height=360, people=2, cameras=CAMERAS)),
                "HYBRIDCAM_COMPOSITOR_WIDTH": str(PROGRAM_W), "HYBRIDCAM_COMPOSITOR_HEIGHT": str(PROGRAM_H),
                "HYBRIDCAM_DASHBOARD_TOKEN": TOKEN,
                "HYBRIDCAM_DASHBOARD_LIVE_TRANSPORTS": "webrtc,mjpeg"})  # WebRTC first here (WebSocket: test_dashboard_live_socket.py)
    runner = ServiceRunner(env, root)
    try:
        runner.start("capture")
        runner.start("compositor", "--outputs", "h264,mjpeg", "--output-dir", str(root / "program"), "--fps", "10",
                     "--h264-port", str(h264_port), "--preview-port", str(mjpeg_port))
        dashboard = runner.start("dashboard", "--port", str(port), "--program-h264-url", f"http://127.0.0.1:{h264_port}/stream",
                                 "--program-url", f"http://127.0.0.1:{mjpeg_port}/stream")
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/health", dashboard, None, timeout_s=60)
        yield url
    finally:
        runner.stop_all()
        redis.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/install_system_packages.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _live_state(url: str) -> dict:
    return httpx.get(f"{url}/api/webrtc", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()


def _wait_for(condition, what: str, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s:.0f} s")


# The strictest policy the page is meant to live under: no inline script, nothing from elsewhere.
STRICT_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


STRICT_PAGES: list[str] = []  # pages served under STRICT_CSP


def _with_strict_csp(route: Route) -> None:
    answer = route.fetch()
    route.fulfill(response=answer, headers={**answer.headers, "content-security-policy": STRICT_CSP})
    STRICT_PAGES.append(route.request.url)


def _open_viewer(browser: Browser, url: str, query: str = "") -> Page:
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    page.route(lambda address: address.startswith(f"{url}/?"), _with_strict_csp)
    page.goto(f"{url}/?token={TOKEN}{query}")
    assert STRICT_PAGES and STRICT_PAGES[-1].endswith(f"?token={TOKEN}{query}")
    assert page.evaluate("() => document.querySelector('#program-mode') !== null")
    assert not errors, f"the page broke its Content-Security-Policy: {errors}"
    page.wait_for_selector("#program-mode.ok", timeout=30_000)
    return page


def test_the_token_guards_the_live_view(live_site: str) -> None:
    assert httpx.get(f"{live_site}/api/webrtc", timeout=5).status_code == 401
    offer = {"sdp": "v=0", "type": "offer", "source": "program"}
    assert httpx.post(f"{live_site}/api/webrtc/offer", json=offer, timeout=5).status_code == 401
    assert httpx.post(f"{live_site}/api/webrtc/offer", json=offer, timeout=5, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert _live_state(live_site)["configured"] is True
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(f"{live_site}/api/webrtc/offer", json=offer, timeout=10, headers=bearer)
    assert answer.status_code == 400 and "offer not usable" in answer.text
    unknown = httpx.post(f"{live_site}/api/webrtc/offer", json={**offer, "source": "camera:nope"}, timeout=10, headers=bearer)
    assert unknown.status_code == 404 and "no live source" in unknown.text
    assert _live_state(live_site)["senders"] == 0


def test_two_viewers_play_the_program_and_closing_them_frees_their_senders(live_site: str, browser: Browser) -> None:
    first = _open_viewer(browser, live_site)
    video = first.locator("#program-video")
    assert first.locator("#program-mode").inner_text() == "WebRTC"
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [PROGRAM_W, PROGRAM_H]
    assert video.evaluate(FRAMES_SHOWN) >= 8, "fewer than 4 fps reached the page over 2 s (program runs at 10)"
    started = video.evaluate("v => v.currentTime")
    first.wait_for_timeout(1000)
    assert video.evaluate("v => v.currentTime") > started
    assert first.locator("#program").is_hidden()  # the MJPEG picture is not fetched alongside

    second = _open_viewer(browser, live_site)
    assert second.locator("#program-video").evaluate(FRAMES_SHOWN) >= 8
    state = _live_state(live_site)
    assert state["senders"] == 2 and state["sources"]["program"]["subscribers"] == 2

    first.context.close()
    _wait_for(lambda: _live_state(live_site)["senders"] == 1, "the first viewer's sender was not released")
    assert second.locator("#program-video").evaluate(FRAMES_SHOWN) >= 8, "the second viewer stopped when the first left"
    second.context.close()
    _wait_for(lambda: _live_state(live_site)["senders"] == 0, "the second viewer's sender was not released")
    _wait_for(lambda: _live_state(live_site)["sources_running"] == 0, "the program relay kept running with no viewer")
    metrics = httpx.get(f"{live_site}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).text
    assert "hybridcam_webrtc_senders 0.0" in metrics


def test_a_single_camera_can_be_watched(live_site: str, browser: Browser) -> None:
    page = _open_viewer(browser, live_site)
    page.locator("#live-source").select_option(f"camera:{LEFT}")  # the page reloads on the camera
    page.wait_for_url(lambda address: f"live=camera%3A{LEFT}" in address or f"live=camera:{LEFT}" in address, timeout=15_000)
    page.wait_for_selector("#program-mode.ok", timeout=30_000)
    assert page.locator("#program-mode").inner_text() == f"WebRTC (camera:{LEFT})"
    assert "token=" not in page.url
    video = page.locator("#program-video")
    assert video.evaluate("v => v.videoWidth") == 640  # the camera's own width (under the 960 limit)
    assert video.evaluate(FRAMES_SHOWN) >= 6
    page.context.close()
    _wait_for(lambda: _live_state(live_site)["sources_running"] == 0, "the camera encoder kept running with no viewer")


def test_without_webrtc_the_page_shows_mjpeg_and_says_so(live_site: str, browser: Browser) -> None:
    page = browser.new_context().new_page()
    page.route("**/api/webrtc/offer", lambda route: route.abort())  # as if a proxy in between dropped it
    page.goto(f"{live_site}/?token={TOKEN}")
    page.wait_for_selector("#program-mode.warn", timeout=30_000)
    assert page.locator("#program-mode").inner_text().startswith("MJPEG (WebRTC unavailable")
    wait_for(page, "document.querySelector('#program').naturalWidth > 0", timeout=30_000)
    assert page.locator("#program-video").is_hidden()
    assert _live_state(live_site)["senders"] == 0
    page.context.close()
