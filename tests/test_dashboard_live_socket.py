"""The WebSocket live view (the compositor's own H.264, decoded in the page with WebCodecs) in a real headless
Chromium, against real capture, compositor and dashboard on a real redis-server.

The page must pick it first and say so, draw new pictures at the program's rate at its size, give its
viewer back when closed, fall back to WebRTC (and say why) where the browser has no WebCodecs, and to
MJPEG where it has neither. The socket is behind the token and refuses another site's page; what it
sends is the compositor's stream itself: key frames with their SPS, decodable as they come.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, sync_playwright
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devstack.servers import LocalRedis, free_port
from shared.h264_stream import RecordReader
from tests.fixtures.pipeline import ServiceRunner, write_site
from tests.fixtures.servers import wait_until_answers
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, wait_for

TOKEN = "socket-test-token"
PROGRAM_W, PROGRAM_H = 640, 360
WIDE, LEFT = f"wswide{os.getpid()}", f"wsleft{os.getpid()}"
CAMERAS = [
    {"id": WIDE, "role": "master", "source": "synthetic"},
    {"id": LEFT, "role": "slave", "source": "synthetic", "covers": {"master": WIDE, "region": [0.0, 0.0, 0.6, 1.0]}},
]
@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("live-socket")
    redis = LocalRedis(data_dir=root / "redis", appendonly=False)
    redis.data_dir.mkdir()
    redis.start()
    h264_port, mjpeg_port, port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1",
                "HYBRIDCAM_SITE_FILE": str(write_site(root / "site.yaml", fps=10, width=640, height=360, people=2, cameras=CAMERAS)),
                "HYBRIDCAM_COMPOSITOR_WIDTH": str(PROGRAM_W), "HYBRIDCAM_COMPOSITOR_HEIGHT": str(PROGRAM_H),
                "HYBRIDCAM_DASHBOARD_TOKEN": TOKEN})
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
    return httpx.get(f"{url}/api/live", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()


def _socket_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/api/live/socket?source=program"


def test_the_socket_sends_the_compositors_h264_behind_the_token(live_site: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(_socket_url(live_site), open_timeout=10).close()
    assert refused.value.response.status_code == 403
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(InvalidStatus) as other_site:  # another site's page, riding on the cookie
        connect(_socket_url(live_site), additional_headers={**bearer, "Origin": "http://elsewhere.example"}, open_timeout=10)
    assert other_site.value.response.status_code == 403

    decoder, reader, pictures = av.CodecContext.create("h264", "r"), RecordReader(), []
    with connect(_socket_url(live_site), additional_headers=bearer, open_timeout=10, max_size=None) as socket:
        first = True
        while len(pictures) < 10:
            units = list(reader.feed(socket.recv(timeout=10)))  # type: ignore[arg-type]
            assert len(units) == 1, "one access unit per message"
            if first:  # a viewer starts at a key frame that carries its parameter sets
                assert units[0].is_keyframe and b"\x00\x00\x01\x67" in units[0].data[:64]
                first = False
            pictures += [f.to_ndarray(format="rgb24") for f in decoder.decode(av.Packet(units[0].data))]
        assert _live_state(live_site)["socket_viewers"] == 1
    assert pictures[0].shape == (PROGRAM_H, PROGRAM_W, 3)
    assert not np.array_equal(pictures[0], pictures[-1]), "the program did not move"


def test_the_page_plays_the_program_over_the_socket_and_says_so(live_site: str, browser: Browser) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{live_site}/?token={TOKEN}")
    page.wait_for_selector("#program-mode.ok", timeout=30_000)
    assert page.locator("#program-mode").inner_text() == "WebSocket"
    assert "WebCodecs" in (page.locator("#program-mode").get_attribute("title") or "")
    canvas = page.locator("#program-canvas")  # drawn by the worker (an OffscreenCanvas)
    assert page.locator("#program-video").is_hidden() and page.locator("#program").is_hidden()
    first, shown_before = canvas.screenshot(), page.evaluate("() => liveSocket.presented")
    page.wait_for_timeout(3000)  # the worker reports its figures once a second
    shown = page.evaluate("() => liveSocket.presented") - shown_before
    assert shown >= 14, f"{shown} pictures shown in about 2-3 s (the program runs at 10 fps)"
    assert page.evaluate("() => [liveSocket.width, liveSocket.height]") == [PROGRAM_W, PROGRAM_H]
    assert canvas.screenshot() != first, "the program picture did not change"
    assert _live_state(live_site)["socket_viewers"] == 1
    page.context.close()
    deadline = time.monotonic() + 10
    while _live_state(live_site)["socket_viewers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _live_state(live_site)["socket_viewers"] == 0, "the closed page's viewer was not released"


def test_without_webcodecs_the_page_falls_back_to_webrtc_then_mjpeg_and_says_why(live_site: str, browser: Browser) -> None:
    context = browser.new_context()
    context.add_init_script("delete window.VideoDecoder; delete window.EncodedVideoChunk;")
    page = context.new_page()
    page.goto(f"{live_site}/?token={TOKEN}")
    page.wait_for_selector("#program-mode.ok", timeout=30_000)
    assert page.locator("#program-mode").inner_text() == "WebRTC"
    assert "no WebCodecs" in (page.locator("#program-mode").get_attribute("title") or "")
    context.close()

    context = browser.new_context()
    context.add_init_script("delete window.VideoDecoder; delete window.RTCPeerConnection;")
    page = context.new_page()
    page.goto(f"{live_site}/?token={TOKEN}")
    page.wait_for_selector("#program-mode.warn", timeout=30_000)
    text = page.locator("#program-mode").inner_text()
    assert text.startswith("MJPEG (WebSocket unavailable") and "WebRTC unavailable: this browser has no WebRTC" in text
    wait_for(page, "document.querySelector('#program').naturalWidth > 0", timeout=30_000)
    context.close()
