"""Actions reach their consumers: the director's interest (a fall is worth a cut) and the dashboard's boxes."""

from __future__ import annotations

from services.compositor.fusion import DetectionFusion
from services.compositor.interest import DEFAULT_WEIGHTS, subjects_of
from services.dashboard.site_state import detection_view
from shared.schemas import Detection, DetectionSet
from shared.site_config import ResolvedCamera
from shared.stream_bus import StreamBus
from tests.fixtures.pipeline import detection_sets, wait_until

EPOCH = 1_700_000_000.0


def wide_camera() -> ResolvedCamera:
    return ResolvedCamera(id="wide", name="wide", source="synthetic", role="master", width=640, height=360, fps=10,
                          cloud_sample_every=10, covers=None)


def detection_set(seq: int, detections: list[Detection]) -> DetectionSet:
    return DetectionSet(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=EPOCH + seq / 10, width=640,
                        height=360, model="m", provider="p", latency_ms=0.0, detections=detections)


def test_a_fallen_person_draws_the_directors_interest() -> None:
    fusion = DetectionFusion()
    for seq in range(40):  # two people standing still for 4 s; the one on the right falls at 3 s
        fallen = ["fall"] if seq >= 30 else []
        fusion.add(detection_set(seq, [
            Detection(label="person", score=0.9, box=(100, 100, 140, 200), track_id=1),
            Detection(label="person", score=0.9, box=(400, 150, 500, 200), track_id=2, actions=fallen),
        ]), EPOCH + seq / 10)
    now = EPOCH + 3.9
    subjects = sorted(subjects_of(wide_camera(), [wide_camera()], fusion, now, DEFAULT_WEIGHTS), key=lambda s: s.box[0])
    standing, fallen_person = subjects
    assert fallen_person.interest - standing.interest == dict(DEFAULT_WEIGHTS.actions)["fall"]
    before = sorted(subjects_of(wide_camera(), [wide_camera()], fusion, EPOCH + 2.9, DEFAULT_WEIGHTS), key=lambda s: s.box[0])
    assert before[0].interest == before[1].interest


def test_the_dashboard_gets_the_action_next_to_the_box() -> None:
    view = detection_view(detection_set(1, [
        Detection(label="person", score=0.9, box=(1, 2, 3, 4), track_id=1, actions=["hands_raised"]),
        Detection(label="person", score=0.8, box=(5, 6, 7, 8), track_id=2),
    ]))
    assert view["boxes"][0]["actions"] == ["hands_raised"]
    assert "actions" not in view["boxes"][1]


def test_edge_infer_publishes_poses_on_tracked_people(services, redis_server) -> None:
    """The real service with HYBRIDCAM_EDGE_POSE=crops: people's detections carry their track, keypoints in the box."""
    services.env["HYBRIDCAM_EDGE_POSE"] = "crops"
    services.env["HYBRIDCAM_EDGE_POSE_MIN_HEIGHT_PX"] = "40"
    services.start("capture")
    services.start("edge-infer")
    bus = StreamBus(redis_server.url)

    def posed() -> list[Detection]:
        return [d for s in detection_sets(bus) for d in s.detections if d.pose is not None]

    assert wait_until(lambda: len(posed()) >= 10, 120), services.logs()
    services.stop_all()
    for item in posed():
        assert item.label == "person" and item.track_id is not None
        keypoints = [(x, y) for x, y, score in item.pose.keypoints if score >= 0.3]  # type: ignore[union-attr]
        x0, y0, x1, y1 = item.box
        margin = max(x1 - x0, y1 - y0)  # the box may have moved on since the pose (carried onto later frames)
        inside = [x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin for x, y in keypoints]
        assert sum(inside) >= 0.8 * len(inside)
