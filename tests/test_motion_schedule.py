"""Motion-aware scheduling: still cameras at the floor rate, moving or tracked ones share the rest,
skipped frames acknowledged with the tracker's boxes and counted."""

from __future__ import annotations

import time
from collections import Counter

import cv2
import numpy as np
import pytest

from services.edge_infer.inference_loop import InferenceLoop
from services.edge_infer.motion_schedule import Candidate, MotionScheduler
from shared.frame_ring import encode_jpeg
from shared.schemas import FrameRef
from shared.stream_bus import DETECTIONS_STREAM, StreamBus, frames_stream
from tests.fixtures.servers import TEST_DATA
from vision.detectors.registry import load_detector

FPS = 15
BACKGROUND = np.random.default_rng(3).integers(60, 200, (180, 320, 3), dtype=np.uint8)


def frame_with_square(x: int) -> np.ndarray:
    frame = BACKGROUND.copy()
    cv2.rectangle(frame, (x, 60), (x + 40, 140), (255, 255, 255), -1)
    return frame


def simulate(scheduler: MotionScheduler, seconds: float, moving: set[str], cameras: list[str],
             enters: tuple[str, float] | None = None) -> tuple[Counter[str], dict[str, float]]:
    analysed: Counter[str] = Counter()
    first_analysis_after_entry: dict[str, float] = {}
    still = BACKGROUND
    for tick in range(int(seconds * FPS)):
        now = tick / FPS
        candidates = []
        for camera in cameras:
            if camera in moving:
                pixels = frame_with_square(20 + (tick * 7) % 240)
            elif enters and camera == enters[0] and now >= enters[1]:
                pixels = frame_with_square(min(240, int((now - enters[1]) * 60)))
            else:
                pixels = still
            scheduler.observe(camera, pixels, now)
            candidates.append(Candidate(camera, camera))
        for camera in scheduler.plan(candidates, now).analyse:
            analysed[camera] += 1
            if enters and camera == enters[0] and now >= enters[1]:
                first_analysis_after_entry.setdefault(camera, now - enters[1])
    return analysed, first_analysis_after_entry


def test_moving_cameras_get_the_budget_and_still_ones_the_floor() -> None:
    cameras = ["m1", "m2", "s1", "s2", "s3", "s4"]
    analysed, _ = simulate(MotionScheduler(per_round=1, floor_fps=1.0), 10.0, {"m1", "m2"}, cameras)
    for still in ("s1", "s2", "s3", "s4"):
        assert 9 <= analysed[still] <= 11, analysed
    assert abs(analysed["m1"] - analysed["m2"]) <= 1, analysed  # round-robin among equals
    assert min(analysed["m1"], analysed["m2"]) >= 3 * max(analysed[s] for s in ("s1", "s2", "s3", "s4")), analysed
    assert sum(analysed.values()) <= 10 * FPS  # never more than one frame a round


def test_equal_cameras_share_round_robin() -> None:
    cameras = ["a", "b", "c"]
    analysed, _ = simulate(MotionScheduler(per_round=2, floor_fps=1.0), 6.0, set(cameras), cameras)
    assert max(analysed.values()) - min(analysed.values()) <= 1, analysed


def test_something_entering_a_still_camera_is_analysed_at_once() -> None:
    cameras = ["m1", "m2", "s1", "s2", "s3", "door"]
    _, delay = simulate(MotionScheduler(per_round=1, floor_fps=1.0), 8.0, {"m1", "m2"}, cameras, enters=("door", 5.0))
    assert delay["door"] <= 0.2, delay


def test_a_camera_with_tracks_stays_active_without_motion() -> None:
    scheduler = MotionScheduler(per_round=1, floor_fps=1.0)
    for camera in ("tracked", "still"):
        scheduler.observe(camera, BACKGROUND, 0.0)
    scheduler.set_tracks("tracked", True)
    counts: Counter[str] = Counter()
    for tick in range(3 * FPS):
        now = tick / FPS
        for camera in ("tracked", "still"):
            scheduler.observe(camera, BACKGROUND, now)
        counts.update(scheduler.plan([Candidate("tracked", "tracked"), Candidate("still", "still")], now).analyse)
    assert counts["still"] <= 3 and counts["tracked"] >= 3 * FPS - 4, counts


def test_bad_schedule_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MotionScheduler(per_round=0)
    with pytest.raises(ValueError):
        MotionScheduler(per_round=1, floor_fps=0)


@pytest.fixture()
def scheduled_loop(redis_server):
    bus = StreamBus(redis_server.url)
    loop = InferenceLoop(bus, load_detector("nanodet", intra_op_num_threads=1), [frames_stream("a"), frames_stream("b")],
                         "edge_infer", "test", max_frame_age_ms=60_000, scheduler=MotionScheduler(per_round=1))
    loop.start()
    yield loop
    loop.close()


def test_skipped_frames_are_acknowledged_with_tracked_boxes_and_counted(scheduled_loop: InferenceLoop) -> None:
    loop = scheduled_loop
    person = encode_jpeg(cv2.imread(str(TEST_DATA / "person.jpg")))
    seq = 0

    def publish_both() -> None:
        nonlocal seq
        seq += 1
        for camera in ("a", "b"):
            loop.bus.publish(frames_stream(camera), FrameRef(camera_id=camera, seq=seq, capture_ts=time.time(),
                                                             width=640, height=424, jpeg=person))
        loop.process(loop.bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))

    for _ in range(4):
        publish_both()
    results = [e.message for e in loop.bus.read_all(DETECTIONS_STREAM)]
    assert len(results) == 8  # every frame answered: detected or carried
    detected = [r for r in results if not r.tracked]
    carried = [r for r in results if r.tracked]
    assert len(detected) == 4 and len(carried) == 4  # one detector call a round
    assert {r.camera_id for r in detected} == {"a", "b"}  # both cameras (people tracked) take turns
    later = [r for r in carried if any(not d.tracked for d in r.detections) or r.detections]
    assert later and all(d.tracked and d.track_id is not None for r in later for d in r.detections)
    assert any(d.label == "person" for r in later for d in r.detections)
    counters = loop.counters
    assert counters["a"].skipped_schedule + counters["b"].skipped_schedule == 4
    assert counters["a"].analysed + counters["b"].analysed == 4
    for camera in ("a", "b"):
        assert loop.bus.redis.xpending(frames_stream(camera), "edge_infer")["pending"] == 0


def test_the_floor_rate_holds_when_rounds_come_late() -> None:
    scheduler = MotionScheduler(per_round=1, floor_fps=1.0)
    analysed = 0
    for tick in range(50):  # a round every 0.4 s for 20 s: never exactly on the second
        now = tick * 0.4
        scheduler.observe("still", BACKGROUND, now)
        analysed += len(scheduler.plan([Candidate("still", "still")], now).analyse)
    assert 19 <= analysed <= 21, analysed
