"""The face watch-list at the edge: the sampler's face mark, and hits arriving through the results bridge."""

from __future__ import annotations

import uuid

import boto3
import pytest

from services.sampler.face_candidates import FaceCandidates
from shared.schemas import Detection, DetectionSet, FaceMatch, FaceMatches, FrameRef, encode_text, frame_id_of
from shared.stream_bus import DETECTIONS_STREAM, FACE_MATCHES_STREAM, StreamBus
from tests import test_dashboard_browser
from tests.test_dashboard_browser import ARTIFACTS, wait_for
from tests.test_results_bridge import make_bridge

chromium_page = test_dashboard_browser.chromium_page  # the dashboard tests' Chromium page fixture, used here too

T0 = 1767225600.0


def edge_set(camera: str, capture_ts: float, boxes: list[tuple[float, float, float, float]], height: int = 1080,
             label: str = "person", source: str = "edge") -> DetectionSet:
    return DetectionSet(camera_id=camera, seq=1, frame_id=frame_id_of(camera, 1, capture_ts), capture_ts=capture_ts,
                        width=height * 16 // 9, height=height, source=source, model="nanodet", provider="cpu",  # type: ignore[arg-type]
                        latency_ms=1.0, detections=[Detection(label=label, score=0.8, box=box) for box in boxes])


def ref(camera: str, capture_ts: float) -> FrameRef:
    return FrameRef(camera_id=camera, seq=2, capture_ts=capture_ts, width=1920, height=1080)


def test_a_person_tall_enough_for_a_40_px_face_marks_the_frame_scaled_to_its_height() -> None:
    candidates = FaceCandidates(bus=None)
    assert candidates.min_person_height(1080) == pytest.approx(280.0)  # 7 face heights of 40 px
    assert candidates.min_person_height(270) == pytest.approx(70.0)
    assert candidates.holds_face(edge_set("a", T0, [(0, 0, 100, 300)]))
    assert not candidates.holds_face(edge_set("a", T0, [(0, 0, 100, 250)]))
    assert candidates.holds_face(edge_set("a", T0, [(0, 0, 30, 80)], height=270))
    assert not candidates.holds_face(edge_set("a", T0, [(0, 0, 100, 600)], label="car"))


def test_the_sampler_reads_the_newest_edge_detections_of_the_same_camera_near_the_frame(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    try:
        bus.publish(DETECTIONS_STREAM, edge_set("lobby", T0, [(0, 0, 100, 400)]))        # tall person
        bus.publish(DETECTIONS_STREAM, edge_set("yard", T0 + 0.1, [(0, 0, 50, 100)]))    # other camera, small
        bus.publish(DETECTIONS_STREAM, edge_set("lobby", T0 + 0.2, [(0, 0, 10, 10)], source="cloud"))
        candidates = FaceCandidates(bus)
        assert candidates.marks(ref("lobby", T0 + 0.3))
        assert not candidates.marks(ref("yard", T0 + 0.3))
        assert not candidates.marks(ref("lobby", T0 + 5.0))  # the edge has seen nothing that recent
        assert not candidates.marks(ref("gate", T0))
    finally:
        bus.close()


def test_marking_survives_a_redis_outage_by_not_marking() -> None:
    unreachable = StreamBus("redis://127.0.0.1:1")
    try:
        assert FaceCandidates(unreachable).marks(ref("lobby", T0)) is False
    finally:
        unreachable.close()


def face_matches(seq: int, width: int = 640, height: int = 360) -> FaceMatches:
    capture_ts = T0 + seq
    return FaceMatches(site="t", frame_id=frame_id_of("wide", seq, capture_ts), camera_id="wide", seq=seq,
                       capture_ts=capture_ts, processed_ts=capture_ts + 0.4, width=width, height=height,
                       matches=[FaceMatch(person="Ada Lovelace", face_id="f-1", similarity=91.5,
                                          box=(100.0, 50.0, 140.0, 90.0), crop_jpeg=b"\xff\xd8\xffjpeg")],
                       alerts=["Ada Lovelace"])


@pytest.fixture()
def queue_url(aws_env: dict[str, str]) -> str:
    return boto3.client("sqs").create_queue(QueueName=f"faces-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def test_hits_reach_the_face_matches_stream_once_in_camera_pixels(redis_server, queue_url) -> None:
    sqs = boto3.client("sqs")
    for body in (encode_text(face_matches(1)), encode_text(face_matches(1)), encode_text(face_matches(2))):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    bridge = make_bridge(redis_server.url, queue_url)
    for _ in range(4):
        bridge.poll_once()
    entries = [entry.message for entry in bridge.bus.read_all(FACE_MATCHES_STREAM)]
    assert [m.seq for m in entries] == [1, 2]  # the duplicate delivery of frame 1 was dropped
    [match] = entries[0].matches
    # The sampler sent 640x360; the site's camera is 1280x720, so the box doubles.
    assert (entries[0].width, entries[0].height) == (1280, 720) and match.box == (200.0, 100.0, 280.0, 180.0)
    assert match.person == "Ada Lovelace" and match.crop_jpeg == b"\xff\xd8\xffjpeg" and entries[0].alerts == ["Ada Lovelace"]
    assert bridge.snapshot()["face_matches"] == 2 and bridge.snapshot()["duplicates"] == 1
    assert bridge.bus.read_all(DETECTIONS_STREAM) == []  # hits are not detections


def test_the_dashboard_watch_list_panel_shows_hits_with_face_camera_time_and_similarity(
    redis_server, tmp_path, chromium_page  # type: ignore[no-untyped-def]
) -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import cv2
    import numpy as np

    from devstack.servers import free_port
    from tests.fixtures.servers import wait_until_answers

    repo = Path(__file__).resolve().parents[1]
    crop = cv2.imencode(".jpg", np.full((48, 48, 3), (40, 90, 200), np.uint8))[1].tobytes()
    bus = StreamBus(redis_server.url)
    before = face_matches(1).model_copy(update={"camera_id": "wide", "matches": [
        FaceMatch(person="Ada Lovelace", face_id="f-1", similarity=91.5, box=(1.0, 2.0, 30.0, 40.0), crop_jpeg=crop)]})
    bus.publish(FACE_MATCHES_STREAM, before)  # already on the stream when the page opens
    port = free_port()
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(repo / "config" / "site.demo.yaml")}
    env.pop("HYBRIDCAM_DASHBOARD_TOKEN", None)
    process = subprocess.Popen([sys.executable, "-m", "hybridcam", "dashboard", "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/health", process)
        page = chromium_page
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#watch-hits li.watch-hit", timeout=30_000)
        first = page.locator("#watch-hits li.watch-hit").first
        assert first.locator("strong").inner_text() == "Ada Lovelace"
        assert first.locator(".camera").inner_text() == "wide"
        assert first.locator(".similarity").inner_text().startswith("92%")
        assert "alert sent" in first.locator(".similarity").inner_text()
        wait_for(page, "document.querySelector('#watch-hits img.face').naturalWidth === 48", timeout=30_000)
        # A live hit arrives on top; a name is shown as text, never parsed as markup.
        live = face_matches(2).model_copy(update={"matches": [
            FaceMatch(person="<b>Eve</b>", face_id="f-2", similarity=83.0, box=(1.0, 2.0, 30.0, 40.0), crop_jpeg=crop)],
            "alerts": []})
        bus.publish(FACE_MATCHES_STREAM, live)
        wait_for(page, "document.querySelectorAll('#watch-hits li.watch-hit').length === 2", timeout=30_000)
        top = page.locator("#watch-hits li.watch-hit").first
        assert top.locator("strong").inner_text() == "<b>Eve</b>" and top.locator("b").count() == 0
        assert "alert sent" not in top.locator(".similarity").inner_text()
        assert errors == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#watchlist-panel").screenshot(path=str(ARTIFACTS / "dashboard-watch-list.png"))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
        bus.close()


def test_the_program_names_a_hit_at_its_face_for_a_while_only_when_asked() -> None:
    import queue

    import numpy as np

    from services.compositor.face_labels import FaceLabels
    from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture
    from services.compositor.settings import CompositorSettings

    assert CompositorSettings().compositor_face_labels is False  # off by default
    arrivals: queue.SimpleQueue = queue.SimpleQueue()
    arrivals.put((face_matches(1, width=1280, height=720), 100.0))
    labels = FaceLabels(hold_s=4.0)
    labels.take(arrivals)
    assert labels.for_camera("wide", 103.0) == [("Ada Lovelace 92%", (100.0, 50.0, 140.0, 90.0))]
    assert labels.for_camera("wide", 104.5) == [] and labels.for_camera("other", 101.0) == []

    renderer = ProgramRenderer(1280, 720, RenderOptions(boxes=False, camera_name=False, clock=False, pip=False))
    frame = np.zeros((720, 1280, 3), np.uint8)
    plain = renderer.compose(ShotPicture(frame, "wide")).copy()
    labelled = renderer.compose(ShotPicture(frame, "wide", face_labels=labels.for_camera("wide", 101.0)))
    changed = np.argwhere((labelled != plain).any(axis=2))
    assert len(changed) > 0
    ys, xs = changed[:, 0], changed[:, 1]
    # The box sits on the face (camera pixels = program pixels here) and the name just above it.
    assert xs.min() >= 98 and ys.min() >= 20 and ys.max() <= 92 and (labelled[50, 100:141] != 0).any()
