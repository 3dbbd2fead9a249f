"""The dashboard treats labels as text (no stored XSS through Redis or cloud results), sends a
Content-Security-Policy, and marks its cookie Secure behind a TLS proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devstack.servers import LocalRedis, free_port
from shared.schemas import Detection, DetectionSet
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.fixtures.cloud_edge import PHOTO_HEIGHT, PHOTO_WIDTH, FramePublisher, write_cloud_site
from tests.fixtures.servers import wait_until_answers
from tests.test_dashboard_browser import chromium_page  # noqa: F401 (fixture)

HOSTILE_LABEL = '</title><img src=x onerror="window.__pwned=1"><title>'


def _dashboard(redis_server: LocalRedis, tmp_path: Path, *extra_env: tuple[str, str]) -> tuple[subprocess.Popen, str]:
    site = write_cloud_site(tmp_path / "site.yaml", master="wide", slave="north")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site), **dict(extra_env)})
    process = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=(tmp_path / "dashboard.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/health", process, tmp_path / "dashboard.log")
    return process, url


def test_a_hostile_label_is_shown_as_text_and_never_runs(redis_server: LocalRedis, tmp_path: Path, chromium_page) -> None:  # noqa: F811
    dashboard, url = _dashboard(redis_server, tmp_path)
    bus = StreamBus(redis_server.url)
    frames = FramePublisher(bus, "wide")
    try:
        policy = httpx.get(url, timeout=5).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy
        page = chromium_page
        page.goto(url)
        page.wait_for_selector("#link.ok", timeout=15_000)
        [ref] = frames.publish(range(1, 2))
        for source in ("edge", "cloud"):
            bus.publish(DETECTIONS_STREAM, DetectionSet(
                camera_id="wide", seq=1, frame_id="wide-1", capture_ts=ref.capture_ts, width=PHOTO_WIDTH, height=PHOTO_HEIGHT,
                source=source, model="m", provider="p", latency_ms=1.0,
                detections=[Detection(label=HOSTILE_LABEL, score=0.9, box=(10.0, 10.0, 100.0, 100.0))]))
        tile = page.locator('.tile[data-camera="wide"]')
        tile.locator("rect.box.cloud").wait_for(state="attached", timeout=15_000)
        tile.locator("rect.box.edge").wait_for(state="attached", timeout=15_000)
        assert tile.locator("svg img").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert HOSTILE_LABEL in tile.locator("svg text").first.text_content()
    finally:
        frames.close()
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(timeout=15)


def test_the_cookie_is_secure_behind_a_tls_proxy(redis_server: LocalRedis, tmp_path: Path) -> None:
    dashboard, url = _dashboard(redis_server, tmp_path, ("HYBRIDCAM_DASHBOARD_TOKEN", "tok-123"))
    try:
        plain = httpx.get(f"{url}/?token=tok-123", timeout=5).headers["set-cookie"]
        proxied = httpx.get(f"{url}/?token=tok-123", headers={"X-Forwarded-Proto": "https"}, timeout=5).headers["set-cookie"]
        assert "Secure" not in plain
        assert "Secure" in proxied and "HttpOnly" in proxied
    finally:
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(timeout=15)
