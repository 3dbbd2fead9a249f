"""The dashboard's parts on their own: live state, cloud frames across date boundaries, access, metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.servers import free_port
from services.dashboard.cloud_frames import CloudFrameBrowser, CloudFramesError, cloud_frame_browser
from services.dashboard.settings import DashboardSettings
from services.dashboard.site_state import SiteState
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.schemas import Alert, Detection, DetectionSet, Health
from shared.settings import load_settings
from shared.site_config import parse_site
from tests.fixtures.cloud import event_of, make_frame, person_jpeg
from tests.fixtures.servers import wait_until_answers
from tests.test_cloud_handler import Harness

REPO = Path(__file__).resolve().parents[1]
SITE = parse_site({
    "site": "test-site",
    "defaults": {"width": 1280, "height": 720, "fps": 10},
    "cameras": [{"id": "cam1", "role": "master", "source": "synthetic"},
                {"id": "cam2", "role": "slave", "source": "synthetic", "covers": {"master": "cam1", "region": [0, 0, 0.5, 0.5]}}],
})


def utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def detections(camera: str, seq: int, source: str = "edge") -> DetectionSet:
    return DetectionSet(camera_id=camera, seq=seq, frame_id=f"{camera}-{seq}", capture_ts=time.time(), width=1280, height=720,
                        source=source, model="nanodet", provider="CPUExecutionProvider", latency_ms=120.0, inference_ms=60.0,
                        detections=[Detection(label="person", class_id=0, score=0.8, box=(10.0, 20.0, 110.0, 220.0))])


# -- live state ------------------------------------------------------------------------------


def test_state_follows_detections_health_and_alerts_and_prices_the_uplink() -> None:
    state = SiteState(SITE.site, SITE.resolved())
    [event] = state.apply(detections("cam1", 7))
    assert event["type"] == "detections" and event["data"]["boxes"][0]["box"] == [10.0, 20.0, 110.0, 220.0]
    assert state.apply(detections("not-on-this-site", 1)) == []

    capture = Health(service="capture", instance="cam2", camera_id="cam2", state="reconnecting", message="no signal",
                     counters={"fps": 0.0, "frames": 40.0})
    assert [e["type"] for e in state.apply(capture)] == ["camera", "service"]
    edge = Health(service="edge_infer", instance="e1", state="ok",
                  counters={"cam1.detect_fps": 4.5, "cam1.skipped": 12.0, "cam1.latency_ms": 95.0, "dead_lettered": 0.0})
    state.apply(edge)
    sampler = Health(service="sampler", instance="s1", state="ok", counters={
        "uptime_s": 600.0, "frames_sampled": 60.0, "records_sent": 60.0, "bytes_sent": 9e6, "master_cameras": 1.0})
    [uplink, _] = state.apply(sampler)
    cost = uplink["data"]["cost"]
    assert cost["cloud_month_usd"] > cost["so_far_usd"] > 0 and cost["hybrid_month_usd"] > cost["cloud_month_usd"]
    alert = Alert(site="test-site", camera_id="cam1", frame_id="cam1-7", label="Person", score=0.91,
                  capture_ts=time.time(), raised_ts=time.time())
    [alert_event] = state.apply(alert)
    assert alert_event == {"type": "alert", "data": alert.model_dump(mode="json")}

    snapshot = state.snapshot()
    cameras = {c["camera_id"]: c for c in snapshot["cameras"]}
    assert cameras["cam1"]["edge"]["detect_fps"] == 4.5 and cameras["cam1"]["detections"]["edge"]["seq"] == 7
    assert cameras["cam2"]["capture"]["state"] == "reconnecting" and cameras["cam2"]["capture"]["message"] == "no signal"
    assert snapshot["alerts"][0]["label"] == "Person" and snapshot["uplink"]["frames_sampled"] == 60.0


def test_health_reports_become_prometheus_series_with_camera_labels() -> None:
    reports = [
        Health(service="capture", instance="cam1", camera_id="cam1", state="ok", counters={"fps": 9.8, "frames": 100.0}),
        Health(service="edge_infer", instance="e1", state="ok", counters={"cam1.detect_fps": 4.0, "cam1.skipped": 3.0}),
        Health(service="sampler", instance="s1", state="degraded", counters={"bytes_sent": 5e6}),
    ]
    from prometheus_client import generate_latest

    text = generate_latest(service_registry(lambda: reports)).decode()
    samples = {(s.name, s.labels.get("camera", ""), s.labels.get("state", "")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("hybridcam_capture_fps", "cam1", "")] == 9.8
    assert samples[("hybridcam_captured_frames_total", "cam1", "")] == 100.0
    assert samples[("hybridcam_detect_fps", "cam1", "")] == 4.0
    assert samples[("hybridcam_skipped_frames_total", "cam1", "")] == 3.0
    assert samples[("hybridcam_uplink_bytes_total", "", "")] == 5e6
    assert samples[("hybridcam_service_healthy", "", "degraded")] == 1.0


# -- cloud frames ------------------------------------------------------------------------------


@pytest.fixture()
def harness(lambda_modules, cloud_resources) -> Harness:  # type: ignore[no-untyped-def]
    return Harness(lambda_modules, cloud_resources)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Los_Angeles"])
def test_latest_cloud_frames_cross_month_and_year_boundaries_in_any_time_zone(
        harness: Harness, zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", zone)  # UTC+14 and UTC-8: the local date differs from the UTC date at every boundary
    time.tzset()
    try:
        frames = [("cam1", 1, "2026-10-31T23:59:58.000Z"), ("cam1", 2, "2026-11-01T00:00:02.000Z"),
                  ("cam2", 3, "2026-12-31T23:59:59.500Z"), ("cam2", 4, "2027-01-01T00:00:00.500Z")]
        for _ in frames:
            harness.expect_detect()
        assert harness.handle(event_of(*(make_frame(camera, seq, utc(when)).encode() for camera, seq, when in frames))) == []
        browser = cloud_frame_browser(harness.resources.table, harness.resources.bucket, None)

        latest = browser.latest(["cam1", "cam2"], limit=10, window_s=70 * 86_400, now=utc("2027-01-01T00:01:00Z"))
        assert [(f.camera_id, f.capture_time) for f in latest] == [(c, w) for c, _, w in reversed(frames)]
        assert latest[-1].s3_key.startswith("frames/cam1/2026/10/31/23/") and latest[0].s3_key.startswith("frames/cam2/2027/01/01/00/")
        assert latest[0].labels[0]["name"] == "Person" and latest[0].labels[0]["box"]
        with urllib.request.urlopen(latest[-1].image_url, timeout=10) as answer:  # the presigned URL, as the browser uses it
            assert answer.read() == person_jpeg()

        newest_two = browser.latest(["cam1", "cam2"], limit=2, window_s=70 * 86_400, now=utc("2027-01-01T00:01:00Z"))
        assert [f.capture_time for f in newest_two] == ["2027-01-01T00:00:00.500Z", "2026-12-31T23:59:59.500Z"]
        short_window = browser.latest(["cam1", "cam2"], window_s=3600, now=utc("2027-01-01T00:01:00Z"))
        assert [f.camera_id for f in short_window] == ["cam2", "cam2"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_wrong_table_is_named_in_one_sentence(harness: Harness) -> None:
    browser: CloudFrameBrowser = cloud_frame_browser("no-such-table", harness.resources.bucket, None)
    with pytest.raises(CloudFramesError, match="no-such-table.*FramesTableName"):
        browser.latest(["cam1"])
    with pytest.raises(CloudFramesError, match="no-such-table"):
        browser.check()


# -- access ------------------------------------------------------------------------------------


def test_binding_beyond_loopback_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDCAM_DASHBOARD_HOST", "0.0.0.0")
    monkeypatch.delenv("HYBRIDCAM_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HYBRIDCAM_DASHBOARD_TOKEN is required"):
        load_settings(DashboardSettings)
    monkeypatch.setenv("HYBRIDCAM_DASHBOARD_TOKEN", "s3cret")
    assert load_settings(DashboardSettings).token == "s3cret"
    monkeypatch.setenv("HYBRIDCAM_DASHBOARD_HOST", "127.0.0.1")
    monkeypatch.delenv("HYBRIDCAM_DASHBOARD_TOKEN")
    assert load_settings(DashboardSettings).token == ""


def test_on_a_non_local_bind_every_route_but_health_needs_the_token(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, token = free_port(), "correct-horse-battery"
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_DASHBOARD_TOKEN": token,
           "HYBRIDCAM_SITE_FILE": str(REPO / "config" / "site.demo.yaml"), "HYBRIDCAM_DASHBOARD_PROGRAM_URL": "http://127.0.0.1:9/stream",
           "HYBRIDCAM_DASHBOARD_LOGIN_FAILURES": "1000"}  # every route is tried twice without the token; the limit has its own test
    process = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--host", "0.0.0.0", "--port", str(port)],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{base}/health", process)
        from services.dashboard.app import create_app

        app = create_app(load_settings(DashboardSettings, redis_url=redis_server.url, dashboard_token=token), SITE)
        paths = {getattr(route, "path", "") for route in app.routes} - {""}
        paths = {p.replace("{camera_id}", "wide") for p in paths} | {"/static/app.js", "/nowhere"}
        assert {"/", "/events", "/metrics", "/api/state", "/api/cloud-frames", "/program.mjpg", "/health"} <= paths
        for path in sorted(paths - {"/health"}):
            answer = httpx.get(base + path, timeout=5)
            assert answer.status_code == 401, f"{path} answered {answer.status_code} without the token"
            assert httpx.get(base + path, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401, path
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200

        assert httpx.get(f"{base}/api/state", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 200
        with httpx.Client(base_url=base, timeout=5) as browser:  # ?token= once, then the cookie carries it
            first = browser.get(f"/?token={token}")
            assert first.status_code == 200 and "hybridcam_token" in first.headers["set-cookie"]
            assert "HttpOnly" in first.headers["set-cookie"]
            assert browser.get("/api/state").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


def test_a_camera_whose_capture_goes_silent_is_shown_down_with_its_server_and_comes_back() -> None:
    cameras = SITE.resolved()[:2]
    servers = {cameras[0].id: "edge-1", cameras[1].id: "edge-2"}
    state = SiteState(SITE.site, cameras, servers=servers, camera_silent_after_s=6.0)
    for camera in cameras:
        state.apply(Health(service="capture", instance=camera.id, camera_id=camera.id, state="ok", ts=100.0, counters={"fps": 10.0}))
    assert state.mark_silent_cameras(105.0) == []
    state.apply(Health(service="capture", instance=cameras[0].id, camera_id=cameras[0].id, state="ok", ts=104.0))

    events = state.mark_silent_cameras(107.0)  # the second server stopped reporting at 100
    assert [e["data"]["camera_id"] for e in events] == [cameras[1].id]
    down = events[0]["data"]
    assert down["capture"]["state"] == "down" and "edge-2" in down["capture"]["message"] and down["server"] == "edge-2"
    assert state.mark_silent_cameras(108.0) == [], "shown down once, not every second"
    assert {s["server"]: s["state"] for s in state.snapshot()["servers"]} == {"edge-1": "up", "edge-2": "down"}

    state.apply(Health(service="capture", instance=cameras[1].id, camera_id=cameras[1].id, state="ok", ts=109.0))
    assert {s["server"]: s["state"] for s in state.snapshot()["servers"]} == {"edge-1": "up", "edge-2": "up"}
