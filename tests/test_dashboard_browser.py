"""The dashboard in a real headless Chromium, against the whole local stack on the synthetic scene.

`hybridcam demo` starts everything (Redis, capture, edge inference, compositor, the cloud path on
moto with the local detector, the dashboard); Playwright drives Debian's Chromium (never a
downloaded browser). The page must show the program moving, camera tiles with boxes, an alert
arriving live, and cloud frames whose pictures load through presigned URLs. A screenshot is kept
in test-artifacts/ (or $HYBRIDCAM_TEST_ARTIFACTS). A second test feeds crafted messages to a lone
dashboard: edge and cloud boxes drawn differently, a reconnecting camera, a Redis outage announced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from devstack.servers import LocalRedis, free_port
from shared.schemas import Detection, DetectionSet, Health
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus
from tests.fixtures.cloud_edge import PHOTO_HEIGHT, PHOTO_WIDTH, FramePublisher, write_cloud_site
from tests.fixtures.pipeline import write_site
from tests.fixtures.servers import wait_until_answers

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("HYBRIDCAM_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = os.environ.get("HYBRIDCAM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Flags for a closed network: no background fetches, no first-run work (see docs/dashboard.md).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
CAMERAS = [
    {"id": "wide", "name": "Wide (master)", "role": "master", "source": "synthetic"},
    {"id": "left", "role": "slave", "source": "synthetic", "covers": {"master": "wide", "region": [0.0, 0.0, 0.6, 1.0]}},
    {"id": "right", "role": "slave", "source": "synthetic", "covers": {"master": "wide", "region": [0.4, 0.0, 1.0, 1.0]}},
]
SERIES = {  # what /metrics must have: family name -> type
    "hybridcam_capture_fps": "gauge", "hybridcam_detect_fps": "gauge", "hybridcam_skipped_frames": "counter",
    "hybridcam_inference_latency_seconds": "histogram", "hybridcam_detection_latency_seconds": "histogram",
    "hybridcam_stream_length": "gauge", "hybridcam_stream_pending": "gauge", "hybridcam_uplink_bytes": "counter",
    "hybridcam_alerts_sent": "counter", "hybridcam_service_healthy": "gauge",
}


@pytest.fixture(scope="module")
def site_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dashboard")
    site = write_site(root / "site.yaml", fps=8, width=640, height=360, people=4, cameras=CAMERAS)
    document = yaml.safe_load(site.read_text())
    document["defaults"]["cloud_sample_every"] = 8  # about one cloud frame a second
    site.write_text(yaml.safe_dump(document))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_EDGE_THREADS": "1", "HYBRIDCAM_EDGE_PROBE_S": "0", "PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
    log = (root / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "hybridcam", "demo", "--duration", "0", "--site", str(site), "--run-dir", str(root / "run"),
         "--dashboard-port", str(port), "--alert-cooldown", "4"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", demo, root / "demo.log", timeout_s=150)
        yield url
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()


@pytest.fixture()
def chromium_page() -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/install_system_packages.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1300})
        finally:
            browser.close()


def wait_for(page: Page, expression: str, timeout: float) -> None:
    """Poll a page expression from here: the page's CSP (no 'unsafe-eval') refuses Playwright's in-page wait_for_function."""
    deadline = time.monotonic() + timeout / 1000.0
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(200)


@pytest.mark.slow
def test_the_page_shows_program_cameras_boxes_alerts_and_cloud_frames_live(site_running: str, chromium_page: Page) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = chromium_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site_running)
    wait_for(page, "document.querySelectorAll('#cameras .tile').length === 3", timeout=30_000)
    assert page.locator("#link").inner_text(timeout=10_000) in ("live", "connecting…")

    # camera tiles show pictures with the edge detector's boxes on them
    page.wait_for_selector("#cameras .tile rect.box.edge", state="attached", timeout=120_000)
    wait_for(page,  # every tile has its camera's picture, downscaled to at most 640 wide
        "[...document.querySelectorAll('#cameras .tile img')].every(i => i.complete && i.naturalWidth === 640)",
        timeout=60_000)

    # the program plays live over the WebSocket (decoded with WebCodecs) and moves (the compositor burns a
    # clock into it, and people walk)
    page.wait_for_selector("#program-mode.ok", timeout=60_000)
    assert page.locator("#program-mode").inner_text() == "WebSocket"
    program = page.locator("#program-canvas")
    first = program.screenshot()
    page.wait_for_timeout(2500)
    assert program.screenshot() != first, "the program picture did not change"

    # a watched label seen by the cloud arrives as a live alert
    page.wait_for_selector("#alerts li.alert.fresh", timeout=150_000)
    assert page.locator("#alerts li.alert.fresh strong").first.inner_text() == "Person"
    assert int(page.locator("#alert-count").inner_text()) >= 1

    # cloud-analysed frames, their pictures fetched through presigned S3 URLs, and the uplink counters
    wait_for(page,
        "[...document.querySelectorAll('.cloud-frame img')].some(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000)
    # the newest cloud frame may be one with nobody in it (a heartbeat, a change): one of them shows the person
    wait_for(page, "[...document.querySelectorAll('.cloud-frame .labels')].some(e => e.textContent.includes('Person'))",
             timeout=30_000)
    wait_for(page, "document.querySelector('#frames-sent').textContent !== '0'", timeout=30_000)
    assert page.locator("#cost-so-far").inner_text().startswith("$")
    page.wait_for_timeout(1000)  # let the newest tile pictures land before the picture is kept
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not errors, f"the page raised: {errors}"


@pytest.mark.slow
def test_metrics_of_the_running_site_parse_and_have_the_named_series(site_running: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{site_running}/metrics", timeout=10).text)}
    missing = {name: kind for name, kind in SERIES.items() if families.get(name) is None or families[name].type != kind}
    assert not missing, f"missing or mistyped series: {missing}"
    cameras = {s.labels["camera"] for s in families["hybridcam_capture_fps"].samples}
    assert cameras == {"wide", "left", "right"}
    assert any(s.value > 0 for s in families["hybridcam_capture_fps"].samples)
    streams = {s.labels["stream"] for s in families["hybridcam_stream_length"].samples}
    assert {"frames:wide", "detections", "health", "alerts"} <= streams
    pending_groups = {s.labels["group"] for s in families["hybridcam_stream_pending"].samples}
    assert "edge_infer" in pending_groups
    counts = [s for s in families["hybridcam_inference_latency_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in counts) > 0


def _detections(camera: str, seq: int, source: str, capture_ts: float, box: tuple[float, float, float, float]) -> DetectionSet:
    return DetectionSet(camera_id=camera, seq=seq, frame_id=f"{camera}-{seq}", capture_ts=capture_ts, width=PHOTO_WIDTH,
                        height=PHOTO_HEIGHT, source=source, model="m", provider="p", latency_ms=50.0,
                        detections=[Detection(label="person", score=0.9, box=box)])


def test_edge_and_cloud_boxes_differ_a_lost_camera_shows_and_a_redis_outage_is_announced(
        redis_server: LocalRedis, tmp_path: Path, chromium_page: Page) -> None:
    site = write_cloud_site(tmp_path / "site.yaml", master="wide", slave="north")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDCAM_", "AWS_"))}
    env.update({"HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site)})
    dashboard = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                                 stdout=(tmp_path / "dashboard.log").open("wb"), stderr=subprocess.STDOUT)
    bus = StreamBus(redis_server.url)
    frames = FramePublisher(bus, "wide")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/health", dashboard, tmp_path / "dashboard.log")
        page = chromium_page
        page.goto(url)
        page.wait_for_selector("#link.ok", timeout=15_000)

        [ref] = frames.publish(range(5, 6))
        bus.publish(DETECTIONS_STREAM, _detections("wide", 5, "edge", ref.capture_ts, (190.0, 100.0, 270.0, 380.0)))
        bus.publish(DETECTIONS_STREAM, _detections("wide", 5, "cloud", ref.capture_ts, (200.0, 110.0, 260.0, 370.0)))
        bus.publish(HEALTH_STREAM, Health(service="capture", instance="north", camera_id="north", state="reconnecting",
                                          message="rtsp://north: connection refused", counters={"fps": 0.0}))
        wide = page.locator('.tile[data-camera="wide"]')
        edge_box, cloud_box = wide.locator("rect.box.edge"), wide.locator("rect.box.cloud")
        edge_box.wait_for(state="attached", timeout=15_000)
        cloud_box.wait_for(state="attached", timeout=15_000)
        style = "(e) => { const s = getComputedStyle(e); return [s.stroke, s.strokeDasharray]; }"
        assert edge_box.evaluate(style) != cloud_box.evaluate(style)
        assert cloud_box.evaluate(style)[1] not in ("none", "")
        assert float(edge_box.get_attribute("x")) == 190.0 and float(edge_box.get_attribute("height")) == 280.0
        assert wide.locator("img").evaluate("i => i.naturalWidth") == PHOTO_WIDTH  # the frame the boxes were found on
        north = page.locator('.tile[data-camera="north"] .state')
        north.filter(has_text="reconnecting").wait_for(timeout=15_000)
        assert "connection refused" in north.get_attribute("title")

        redis_server.stop()
        page.wait_for_selector("#banner:not([hidden])", timeout=20_000)
        assert "cannot reach Redis" in page.locator("#banner").inner_text()
        redis_server.start()
        page.wait_for_selector("#banner[hidden]", state="attached", timeout=30_000)
        assert dashboard.poll() is None
    finally:
        frames.close()
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(timeout=15)
