"""Actions on footage through the edge's real path: NanoDet (live or its recorded boxes), the tracker,
MoveNet on each tracked person's crop, the streaming action classifier.

- fall: an acted scene (services/capture/acted_scene.py): a person cut out of a real photo, on the real
  beach background, walks and falls (no real clip of a fall ships in any package we can reach);
- no fall (nor lying, nor running) on the real walking clips (Intel IoT devkit sample videos, CC BY 4.0);
- running: an acted scene where the person walks, then runs;
- loitering: real footage where a person stays in one spot for about 24 s (one-by-one-stays-cut.mp4).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.capture.acted_scene import Act, ActedScene
from services.edge_infer.clip_replay import Replay, live_detections, recorded_detections, replay, video_frames
from services.edge_infer.pose_stage import PoseStage
from vision.actions import ActionClassifier, ActionThresholds
from vision.detectors.registry import load_detector
from vision.pose import SinglePoseModel

DATA = Path(__file__).parent / "data"
MODELS = Path(__file__).parents[1] / "models"


@pytest.fixture(scope="module")
def pose_model() -> SinglePoseModel:
    return SinglePoseModel(MODELS / "movenet-lightning.onnx", ["CPUExecutionProvider"], threads=2)


@pytest.fixture(scope="module")
def nanodet():
    return load_detector("nanodet", ["CPUExecutionProvider"], intra_op_num_threads=2)


def stage(model: SinglePoseModel, limits: ActionThresholds | None = None) -> PoseStage:
    return PoseStage(model, ActionClassifier(limits), rate_hz=5.0, max_people=4)


def actions_seen(result: Replay) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    for frame in result.results:
        for item in frame.detections:
            for name in item.actions:
                seen.setdefault(name, []).append(frame.capture_ts)
    return seen


def test_fall_is_detected_on_the_acted_fall(pose_model, nanodet) -> None:
    scene = ActedScene([Act("walk", 1.6), Act("fall", 0.6), Act("lie", 3.0)], sprite=1, person_px=200, fps=5.0)
    result = replay(scene.frames(), live_detections(nanodet), stage(pose_model))
    seen = actions_seen(result)
    fall_start = scene.start_of("fall")
    assert "fall" in seen, f"no fall found; actions seen: {seen}"
    latency = seen["fall"][0] - fall_start
    assert 0.0 < latency <= 3.0, f"fall reported {latency:.1f} s after it started"
    assert all(ts > fall_start for ts in seen["fall"])
    # The pose stage saw the person upright before the fall (keypoints attached to the track).
    posed = [d for frame in result.results if frame.capture_ts < fall_start for d in frame.detections if d.pose]
    assert posed and all(d.track_id is not None for d in posed)


@pytest.mark.parametrize("clip, recorded", [
    ("video/one-by-one-person-detection.mp4", True),  # 73 s, three visits, NanoDet's recorded boxes
    ("clips/one-by-one-stays-cut.mp4", True),  # a person stays 24 s in one spot
    ("faces/walking.mp4", False),  # two people walk towards the camera
    ("clips/store-aisle-cut.mp4", False),  # shoppers in an aisle
    ("clips/worker-zone-cut.mp4", False),  # workers moving about a factory floor
])
def test_no_fall_on_real_walking_clips(pose_model, nanodet, clip: str, recorded: bool) -> None:
    path = DATA / clip
    detect = recorded_detections(path.with_name(f"{path.stem}.detections.json.gz")) if recorded else live_detections(nanodet)
    result = replay(video_frames(path), detect, stage(pose_model))
    seen = actions_seen(result)
    assert result.timing.people_posed > 0, "nobody was posed: the clip does not test anything"
    assert "fall" not in seen and "lying" not in seen and "running" not in seen, seen


def test_running_is_detected_when_the_person_runs(pose_model, nanodet) -> None:
    scene = ActedScene([Act("walk", 2.5), Act("run", 2.0)], sprite=1, person_px=160, start_x=0.05, fps=5.0)
    seen = actions_seen(replay(scene.frames(), live_detections(nanodet), stage(pose_model)))
    run_start = scene.start_of("run")
    assert "running" in seen, f"no running found; actions seen: {seen}"
    assert run_start < seen["running"][0] <= run_start + 1.6
    assert "fall" not in seen


def test_loitering_on_real_footage_of_a_person_staying(pose_model) -> None:
    """one-by-one-stays-cut.mp4: a person walks in at ~3.5 s and stays in one spot until ~27.5 s."""
    path = DATA / "clips" / "one-by-one-stays-cut.mp4"
    limits = ActionThresholds()
    result = replay(video_frames(path), recorded_detections(path.with_name(f"{path.stem}.detections.json.gz")),
                    stage(pose_model, limits))
    seen = actions_seen(result)
    assert "loitering" in seen, f"no loitering found; actions seen: {seen}"
    arrived = next(frame.capture_ts for frame in result.results if frame.detections)
    assert seen["loitering"][0] >= arrived + limits.loiter_s
    assert seen["loitering"][0] <= arrived + limits.loiter_s + 3.0
