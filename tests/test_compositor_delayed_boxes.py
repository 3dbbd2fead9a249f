"""Boxes on the right picture: the program runs a constant delay behind capture and draws each frame's own
detections (or tracks interpolated to that frame), measured against the synthetic scene's ground truth."""

from __future__ import annotations

from collections import deque

import numpy as np

from services.capture.synthetic_scene import SyntheticScene
from services.compositor.frame_boxes import boxes_for_frame
from services.compositor.fusion import DetectionFusion
from services.compositor.program import frame_at
from shared.schemas import Detection, DetectionSet, FrameRef

EPOCH = 1_700_000_000.0
CAMERA_FPS = 15.0
EDGE_EVERY = 3  # the edge analyses every third frame (5 fps)
LATENCY_S = 0.3  # detections arrive this long after their frame


def ref(seq: int) -> FrameRef:
    return FrameRef(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=EPOCH + seq / CAMERA_FPS, shm_name="ring", slot=seq % 16,
                    width=640, height=360)


def test_frame_at_picks_the_newest_frame_old_enough() -> None:
    recent = deque(ref(i) for i in range(30))
    assert frame_at(recent, EPOCH + 1.0).seq == 15
    assert frame_at(recent, EPOCH + 1.0 - 1e-6).seq == 14
    assert frame_at(recent, EPOCH - 5).seq == 0


def offsets(scene: SyntheticScene, delay_s: float, seconds: float = 20.0) -> tuple[list[float], list[float]]:
    """Drive fusion like the live program and compare the drawn boxes with the truth of the frame shown."""
    fusion = DetectionFusion()
    pending = []
    for seq in range(0, int(seconds * CAMERA_FPS), EDGE_EVERY):
        t = seq / CAMERA_FPS
        people = [Detection(label="person", score=0.9, box=p.box) for p in scene.ground_truth("wide", t) if p.visible_fraction >= 0.5]
        pending.append((EPOCH + t + LATENCY_S, DetectionSet(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=EPOCH + t,
                                                            width=640, height=360, model="truth", provider="test", latency_ms=300,
                                                            detections=people)))
    recent: deque[FrameRef] = deque(maxlen=64)
    own, interpolated = [], []
    for tick in range(int(seconds * CAMERA_FPS)):
        now = EPOCH + tick / CAMERA_FPS + 1e-4
        recent.append(ref(tick))
        while pending and pending[0][0] <= now:
            fusion.add(pending.pop(0)[1], now)
        shown = frame_at(recent, now - delay_s)
        boxes = boxes_for_frame(fusion, "wide", shown.capture_ts, 640, 360)
        if boxes is None:
            continue
        truth = scene.ground_truth("wide", shown.seq / CAMERA_FPS)
        for detection in boxes.detections:
            person = min(truth, key=lambda p: abs(p.box[0] - detection.box[0]) + abs(p.box[2] - detection.box[2]), default=None)
            if person is None:
                continue
            dx = (detection.box[0] + detection.box[2] - person.box[0] - person.box[2]) / 2
            dy = (detection.box[1] + detection.box[3] - person.box[1] - person.box[3]) / 2
            (interpolated if boxes.predicted else own).append(float(np.hypot(dx, dy)) / (person.box[3] - person.box[1]))
    return own, interpolated


def test_boxes_lie_on_their_people_when_the_program_runs_behind_capture() -> None:
    scene = SyntheticScene.default_site(num_cameras=1, width=640, height=360, scenario="walkthrough")
    own, interpolated = offsets(scene, delay_s=0.5)
    assert own and interpolated, "both kinds of boxes are drawn"
    assert np.median(own) <= 0.01, "a frame's own detections sit on its people"
    assert np.median(own + interpolated) <= 0.05, "at most 5 % of the person's height"
    live_own, live_interpolated = offsets(scene, delay_s=0.0)
    assert not live_own, "without the delay no frame's own detections have arrived when it is shown"
    assert len(live_interpolated) < len(own + interpolated) / 2, "and most pictures would get no box at all"


def test_frames_the_edge_only_carried_boxes_onto_get_boxes_interpolated_between_real_detections() -> None:
    """edge_infer publishes its tracker's guesses (``tracked``) for frames its detector skipped. Its guess for a car
    that turned runs on along the old heading; the compositor, behind capture, has the detections on both sides of
    the frame and draws the box between them, with the edge's label and track id (for the cloud's labels)."""

    def car(t: float) -> tuple[float, float, float, float]:  # right at 100 px/s for 1 s, then down at 100 px/s
        x, y = 100.0 + 100.0 * min(t, 1.0), 60.0 + 100.0 * max(t - 1.0, 0.0)
        return (x, y, x + 160.0, y + 100.0)

    def edge_set(seq: int, box: tuple[float, float, float, float], carried: bool) -> DetectionSet:
        return DetectionSet(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=EPOCH + seq / CAMERA_FPS,
                            width=640, height=360, model="nanodet", provider="cpu", latency_ms=5.0, tracked=carried,
                            detections=[Detection(label="car", score=0.7 if carried else 0.8, box=box, tracked=carried, track_id=7)])

    def edge_guess(seq: int) -> tuple[float, float, float, float]:  # the last detection moved on to the right
        last = (seq // 6) * 6
        x0, y0, x1, y1 = car(last / CAMERA_FPS)
        dx = 100.0 * (seq - last) / CAMERA_FPS
        return (x0 + dx, y0, x1 + dx, y1)

    fusion = DetectionFusion(labels=frozenset({"car"}))
    for seq in range(0, 31):  # the detector runs on every 6th frame
        detected = seq % 6 == 0
        fusion.add(edge_set(seq, car(seq / CAMERA_FPS) if detected else edge_guess(seq), carried=not detected), 0.0)

    shown = 20  # t = 1.33 s: between the detections of frames 18 (t = 1.2) and 24 (t = 1.6), already turned
    boxes = boxes_for_frame(fusion, "wide", EPOCH + shown / CAMERA_FPS, 640, 360, f"wide-{shown}")
    assert boxes is not None and boxes.predicted
    [drawn] = boxes.detections
    truth = car(shown / CAMERA_FPS)
    assert max(abs(a - b) for a, b in zip(edge_guess(shown), truth)) > 10.0, "the edge's guess ran on past the turn"
    assert max(abs(a - b) for a, b in zip(drawn.box, truth)) < 2.0, "the box lies between the real detections"
    assert drawn.label == "car" and drawn.track_id == 7, "it keeps the edge's label and track id"

    own = boxes_for_frame(fusion, "wide", EPOCH + 18 / CAMERA_FPS, 640, 360, "wide-18")
    assert own is not None and not own.predicted and own.detections[0].score == 0.8, "a detected frame shows its own boxes"


def test_a_track_missing_from_the_next_detection_is_gone_and_before_it_arrives_the_edge_guess_stands() -> None:
    def edge_set(seq: int, boxes: list[tuple[float, float, float, float]], carried: bool) -> DetectionSet:
        return DetectionSet(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=EPOCH + seq / CAMERA_FPS,
                            width=640, height=360, model="nanodet", provider="cpu", latency_ms=5.0, tracked=carried,
                            detections=[Detection(label="person", score=0.7, box=box, tracked=carried, track_id=3) for box in boxes])

    person = (100.0, 100.0, 160.0, 260.0)
    guess = (104.0, 100.0, 164.0, 260.0)
    fusion = DetectionFusion()
    fusion.add(edge_set(0, [person], carried=False), 0.0)
    for seq in range(1, 6):  # the detector's results for frames 6 on have not arrived yet
        fusion.add(edge_set(seq, [guess], carried=True), 0.0)
    waiting = boxes_for_frame(fusion, "wide", EPOCH + 5 / CAMERA_FPS, 640, 360, "wide-5")
    assert waiting is not None and [d.box for d in waiting.detections] == [guess], "the edge's guess until the next detection is in"

    fusion.add(edge_set(6, [], carried=False), 0.0)  # she left: the detector no longer finds her
    gone = boxes_for_frame(fusion, "wide", EPOCH + 5 / CAMERA_FPS, 640, 360, "wide-5")
    assert gone is not None and gone.detections == [], "no box lingers where the next detection found nobody"
