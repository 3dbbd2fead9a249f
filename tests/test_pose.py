"""MoveNet through vision/pose.py on a real photo, and the pose stage's budget (who is posed when)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.edge_infer.pose_stage import PoseStage, match_poses
from shared.schemas import Detection, DetectionSet
from vision.detectors.base import InvalidFrameError
from vision.pose import MultiPoseModel, SinglePoseModel

DATA = Path(__file__).parent / "data"
MODELS = Path(__file__).parents[1] / "models"
PERSON_BOX = (188.0, 99.0, 274.0, 374.0)  # the person in person.jpg (NanoDet finds about this box)
NOSE, L_HIP, R_HIP, L_ANKLE, R_ANKLE = 0, 11, 12, 15, 16


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    frame = cv2.imread(str(DATA / "person.jpg"))
    assert frame is not None
    return frame


def assert_standing_person(keypoints: np.ndarray) -> None:
    x0, y0, x1, y1 = PERSON_BOX
    confident = keypoints[keypoints[:, 2] >= 0.3]
    assert len(confident) >= 12
    assert ((confident[:, 0] >= x0 - 15) & (confident[:, 0] <= x1 + 15) & (confident[:, 1] >= y0 - 15)
            & (confident[:, 1] <= y1 + 15)).all()
    hips_y = keypoints[[L_HIP, R_HIP], 1].mean()
    assert keypoints[NOSE, 1] < hips_y < keypoints[[L_ANKLE, R_ANKLE], 1].mean()


def test_single_pose_on_a_crop_finds_the_standing_person(photo: np.ndarray) -> None:
    model = SinglePoseModel(MODELS / "movenet-lightning.onnx", ["CPUExecutionProvider"], threads=2)
    assert_standing_person(model.estimate(photo, PERSON_BOX).keypoints)
    with pytest.raises(InvalidFrameError):
        model.estimate(photo.astype(np.float32), PERSON_BOX)


def test_multi_pose_finds_the_person_and_matches_the_tracked_box(photo: np.ndarray) -> None:
    model = MultiPoseModel(MODELS / "movenet-multipose.onnx", ["CPUExecutionProvider"], threads=2)
    poses = model.estimate(photo)
    matched = match_poses(poses, {0: PERSON_BOX, 1: (500.0, 10.0, 560.0, 60.0)})
    assert list(matched) == [0]
    assert_standing_person(matched[0].keypoints)


def test_the_pose_stage_poses_at_most_max_people_each_at_most_rate_hz(photo: np.ndarray) -> None:
    model = SinglePoseModel(MODELS / "movenet-lightning.onnx", ["CPUExecutionProvider"], threads=2)
    stage = PoseStage(model, rate_hz=5.0, max_people=2, min_height_px=48)
    people = [Detection(label="person", score=0.9, box=(20.0 + 100 * i, 100.0, 90.0 + 100 * i, 300.0), track_id=i + 1)
              for i in range(5)]
    small = Detection(label="person", score=0.9, box=(5.0, 5.0, 20.0, 30.0), track_id=9)  # too small to pose
    posed_at: dict[int, list[float]] = {}
    for frame in range(10):  # 10 fps for 1 s
        ts = 100.0 + frame / 10
        result = DetectionSet(camera_id="c", seq=frame, frame_id=f"c-{frame}", capture_ts=ts, width=640, height=424,
                              model="m", provider="p", latency_ms=0.0, detections=[*people, small])
        before = stage.counters.estimated
        out = stage.annotate(photo, result)
        assert stage.counters.estimated - before <= 2
        for item in out.detections:
            if item.pose is not None and item.pose.ts == ts:
                posed_at.setdefault(item.track_id or 0, []).append(ts)
    assert 9 not in posed_at
    assert set(posed_at) == {1, 2, 3, 4, 5}  # least recently posed first: everyone gets a turn
    for times in posed_at.values():
        assert all(b - a >= 0.2 - 1e-6 for a, b in zip(times, times[1:]))


def test_a_frame_the_pose_model_cannot_take_costs_only_its_poses(photo: np.ndarray) -> None:
    """The edge loop publishes the frame's detections without new poses and counts pose.failed; the loop goes on."""
    from services.edge_infer.inference_loop import InferenceLoop
    from shared.frame_ring import BorrowedFrame

    model = SinglePoseModel(MODELS / "movenet-lightning.onnx", ["CPUExecutionProvider"], threads=1)
    stage = PoseStage(model)
    loop = InferenceLoop.__new__(InferenceLoop)  # only the pose step is exercised: no bus, no detector
    loop.pose_stage = stage
    person = Detection(label="person", score=0.9, box=PERSON_BOX, track_id=1)
    result = DetectionSet(camera_id="c", seq=1, frame_id="c-1", capture_ts=1.0, width=640, height=424, model="m",
                          provider="p", latency_ms=0.0, detections=[person])
    grey = BorrowedFrame(pixels=photo[..., 0], reader=None, slot=0, seq=1)  # 2-D: not a colour frame
    assert loop._with_poses(grey, result) == result
    assert stage.counters.failed == 1
    good = BorrowedFrame(pixels=photo, reader=None, slot=0, seq=1)
    posed = loop._with_poses(good, result.model_copy(update={"capture_ts": 2.0}))
    assert posed.detections[0].pose is not None and stage.counters.estimated == 1
