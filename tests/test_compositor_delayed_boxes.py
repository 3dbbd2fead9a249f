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
