"""The streaming action classifier on keypoint sequences: each rule fires when its action happens and not otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.edge_infer.settings import ACTION_PREFIX, EdgeInferSettings
from shared.schemas import ACTION_NAMES, Detection, DetectionSet, decode_as
from vision.actions import ActionClassifier, ActionThresholds, posture_of, torso_angle_deg

HEIGHT = 200.0
FPS = 10.0


def body(feet_x: float, feet_y: float, angle_deg: float = 0.0, hands_up: bool = False) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """Box and 17 keypoints of a person of HEIGHT px whose body is tilted by angle_deg about the feet."""
    # Offsets of each keypoint up from the feet (fraction of the height) and sideways (fraction).
    up = {0: 0.93, 1: 0.95, 2: 0.95, 3: 0.94, 4: 0.94, 5: 0.8, 6: 0.8, 7: 0.65, 8: 0.65, 9: 0.5, 10: 0.5,
          11: 0.5, 12: 0.5, 13: 0.27, 14: 0.27, 15: 0.02, 16: 0.02}
    side = {0: 0, 1: -0.02, 2: 0.02, 3: -0.04, 4: 0.04, 5: -0.1, 6: 0.1, 7: -0.12, 8: 0.12, 9: -0.12, 10: 0.12,
            11: -0.07, 12: 0.07, 13: -0.06, 14: 0.06, 15: -0.05, 16: 0.05}
    if hands_up:
        up.update({7: 0.95, 8: 0.95, 9: 1.08, 10: 1.08})
    a = math.radians(angle_deg)
    keypoints = np.zeros((17, 3), np.float32)
    for k in range(17):
        dx, dy = side[k] * HEIGHT, -up[k] * HEIGHT
        keypoints[k] = (feet_x + dx * math.cos(a) - dy * math.sin(a), feet_y + dx * math.sin(a) + dy * math.cos(a), 0.8)
    x0, y0 = keypoints[:, :2].min(axis=0) - 5
    x1, y1 = keypoints[:, :2].max(axis=0) + 5
    return (float(x0), float(y0), float(x1), float(y1)), keypoints


def run(frames: list[tuple[float, float, float, bool]], limits: ActionThresholds | None = None) -> dict[str, float]:
    """Feed (feet_x, feet_y, angle, hands_up) one frame at a time; the first time each action is active."""
    classifier = ActionClassifier(limits)
    first: dict[str, float] = {}
    for i, (x, y, angle, hands) in enumerate(frames):
        box, keypoints = body(x, y, angle, hands)
        update = classifier.update(("cam", 1), i / FPS, box, keypoints)
        for name in update.active:
            first.setdefault(name, i / FPS)
    return first


def fall_sequence(fall_s: float, power: float = 2.0) -> list[tuple[float, float, float, bool]]:
    """Walk 2 s, tip over about the feet in fall_s (accelerating when power > 1), lie still 6 s."""
    walk = [(100 + 25 * i, 600, 0.0, False) for i in range(20)]
    steps = max(1, int(fall_s * FPS))
    tipping = [(600, 600, 90.0 * ((i + 1) / steps) ** power, False) for i in range(steps)]
    lying = [(600, 600, 90.0, False) for _ in range(60)]  # 6 s lying still
    return walk + tipping + lying


def test_a_quick_fall_fires_fall_then_lying() -> None:
    first = run(fall_sequence(0.6))
    assert "fall" in first and "lying" in first
    lying_start = 2.0 + 0.6
    limits = ActionThresholds()
    assert first["fall"] == pytest.approx(lying_start - 0.2 + limits.fall_still_s, abs=0.35)  # lying from ~60 deg on
    assert first["lying"] >= first["fall"]


def test_lying_down_slowly_is_lying_but_no_fall() -> None:
    first = run(fall_sequence(5.0, power=1.0))  # lowering the torso steadily over 5 s
    assert "lying" in first and "fall" not in first


def test_someone_first_seen_lying_is_lying_but_has_not_fallen() -> None:
    first = run([(600, 600, 90.0, False)] * 60)
    assert "lying" in first and "fall" not in first


def test_walking_standing_and_sitting_still_raise_nothing() -> None:
    walk = [(100 + 25 * i, 600, 0.0, False) for i in range(100)]
    lean = [(100 + 25 * 99, 600, 30.0 * math.sin(i / 5) ** 2, False) for i in range(100)]  # bending, never lying
    assert run(walk + lean) == {}


def test_running_fires_only_while_fast() -> None:
    limits = ActionThresholds()
    walking = [(100 + (1.4 / 1.7) * HEIGHT / FPS * i, 600, 0.0, False) for i in range(50)]
    assert "running" not in run(walking)
    running = [(100 + (4.0 / 1.7) * HEIGHT / FPS * i, 600, 0.0, False) for i in range(30)]
    first = run(running)
    assert "running" in first and first["running"] <= limits.running_min_s + 1.0


def test_loitering_after_staying_in_one_spot() -> None:
    limits = ActionThresholds(loiter_s=5.0)
    swaying = [(500 + 20 * math.sin(i / 7), 600, 0.0, False) for i in range(80)]
    first = run(swaying, limits)
    assert first.get("loitering") == pytest.approx(5.0, abs=0.15)
    passing = [(100 + 5 * i, 600, 0.0, False) for i in range(80)]  # slow walk, 2.5 heights in 8 s
    assert "loitering" not in run(passing, limits)


def test_hands_raised_needs_both_hands_up_for_a_while() -> None:
    frames = [(500, 600, 0.0, False)] * 10 + [(500, 600, 0.0, True)] * 10
    first = run(frames)
    assert first.get("hands_raised") == pytest.approx(1.0 + ActionThresholds().hands_min_s, abs=0.15)
    assert "hands_raised" not in run([(500, 600, 0.0, False)] * 20 + [(500, 600, 0.0, True)] * 3)


def test_a_fall_that_breaks_the_track_carries_on_in_the_new_track() -> None:
    """The box changes so much in a fall that the tracker may start a new track: the state is handed over."""
    classifier = ActionClassifier()
    frames = fall_sequence(0.6)
    fired = False
    for i, (x, y, angle, hands) in enumerate(frames):
        box, keypoints = body(x, y, angle, hands)
        track = 1 if angle < 50 else 2
        fired |= "fall" in classifier.update(("cam", track), i / FPS, box, keypoints).active
    assert fired


def test_a_live_track_keeps_its_state_when_a_new_box_appears_beside_it() -> None:
    """A spurious second box over a standing person must not take the person's state (their loitering clock)."""
    classifier = ActionClassifier(ActionThresholds(loiter_s=5.0))
    for i in range(80):
        box, keypoints = body(500, 600)
        present = {("cam", 1), ("cam", 2)} if i == 30 else {("cam", 1)}
        if i == 30:  # the detector also boxes the person's upper half once: a new track next to the live one
            upper, upper_keypoints = body(500, 500)
            classifier.update(("cam", 2), i / FPS + 0.01, upper, upper_keypoints, present=present)
        active = classifier.update(("cam", 1), (i + 1) / FPS, box, keypoints, present=present).active
    assert "loitering" in active


def test_posture_falls_back_to_the_box_without_torso_keypoints() -> None:
    limits = ActionThresholds()
    assert posture_of((0, 0, 100, 40), None, limits) == "lying"
    assert posture_of((0, 0, 40, 100), None, limits) == "upright"
    # A person half out of the picture (the box cut by the frame's edge) says nothing about the posture.
    assert posture_of((300, 380, 470, 432), None, limits, frame_size=(768, 432)) == "between"
    assert posture_of((300, 380, 470, 420), None, limits, frame_size=(768, 432)) == "lying"
    _, keypoints = body(0, 0, 0.0)
    assert torso_angle_deg(keypoints, 0.3) == pytest.approx(0.0, abs=1e-3)
    keypoints[5, 2] = 0.1  # one shoulder unsure
    assert torso_angle_deg(keypoints, 0.3) is None


def test_state_is_per_track_and_bounded() -> None:
    classifier = ActionClassifier(ActionThresholds(forget_s=2.0))
    for track in range(50):
        box, keypoints = body(100 + 300 * track, 600)
        classifier.update(("cam", track), 0.0, box, keypoints)
    classifier.forget_older_than(10.0)
    assert classifier.tracks == {}


def test_every_threshold_is_an_edge_setting() -> None:
    """HYBRIDCAM_EDGE_ACTION_<NAME> for each threshold, same defaults, and they reach the classifier."""
    fields = EdgeInferSettings.model_fields
    for name, field in ActionThresholds.model_fields.items():
        assert fields[ACTION_PREFIX + name].default == field.default, name
    settings = EdgeInferSettings(edge_action_loiter_s=7.5)  # type: ignore[call-arg]
    assert settings.action_thresholds().loiter_s == 7.5


def test_actions_and_pose_travel_in_the_detection_set() -> None:
    _, keypoints = body(100, 300)
    pose = {"keypoints": [tuple(map(float, k)) for k in keypoints], "score": 0.8, "ts": 1.0}
    item = Detection(label="person", score=0.9, box=(0, 0, 10, 20), track_id=3, pose=pose, actions=["fall"])  # type: ignore[arg-type]
    message = DetectionSet(camera_id="c", seq=1, frame_id="f", capture_ts=1.0, width=640, height=480, model="m",
                           provider="p", latency_ms=1.0, detections=[item])
    decoded = decode_as(message.encode(), DetectionSet)
    assert decoded.detections[0].actions == ["fall"] and decoded.detections[0].pose is not None
    assert set(ACTION_NAMES) == {"fall", "lying", "running", "loitering", "hands_raised"}
    with pytest.raises(ValueError):
        Detection(label="person", score=0.9, box=(0, 0, 10, 20), actions=["dancing"])  # type: ignore[list-item]
