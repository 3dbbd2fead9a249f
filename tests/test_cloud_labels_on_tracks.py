"""A cloud label, once returned, stays on the edge's track: drawn on the same person's box 5 s later,
on frames the cloud never saw.

Real parts along the way: the edge's tracker (TrackCarrier) gives her box its id; the sampler's
CloudFrame carries the tracks; the cloud's pairing (CloudFrame.track_of, as the Lambda runs it) names
her track in the cloud's answer; the results bridge's conversion keeps it; the compositor's fusion,
labels and renderer draw the program frame.
"""

from __future__ import annotations

import numpy as np

from services.compositor.frame_boxes import boxes_for_frame
from services.compositor.fusion import DetectionFusion
from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture
from services.edge_infer.track_carrier import TrackCarrier
from services.results_bridge.service import detection_set_of
from shared.cloud_track_labels import CloudTrackLabels
from shared.schemas import CloudFrame, CloudResult, Detection, DetectionSet, FrameTrack

WIDTH, HEIGHT, FPS = 1280, 720, 10.0


def her_box(t: float) -> tuple[float, float, float, float]:
    x = 200.0 + 60.0 * t  # she walks right, 60 px a second
    return (x, 200.0, x + 120.0, 600.0)


def edge_set(carrier: TrackCarrier, seq: int) -> DetectionSet:
    t = seq / FPS
    found = DetectionSet(camera_id="wide", seq=seq, frame_id=f"wide-{seq}", capture_ts=1000.0 + t, width=WIDTH,
                         height=HEIGHT, model="nanodet", provider="cpu", latency_ms=5.0,
                         detections=[Detection(label="person", score=0.8, box=her_box(t))])
    return carrier.observe(found)


def test_a_cloud_label_is_drawn_on_the_same_persons_box_5_s_later() -> None:
    carrier, fusion, labels = TrackCarrier(), DetectionFusion(), CloudTrackLabels()
    sent = edge_set(carrier, 5)  # the frame the sampler sends, at 0.5 s
    for seq in range(5):
        fusion.add(edge_set(carrier, seq), 0.0)
    fusion.add(sent, 0.0)
    [her] = sent.detections
    assert her.track_id is not None

    # The cloud's answer for that frame: her box (slightly different) and a hard hat inside it.
    frame = CloudFrame(site="s", frame_id=sent.frame_id, camera_id="wide", seq=5, capture_ts=sent.capture_ts,
                       width=WIDTH, height=HEIGHT, jpeg=b"\xff\xd8",
                       tracks=[FrameTrack(track_id=her.track_id, label="person",
                                          box=(her.box[0] / WIDTH, her.box[1] / HEIGHT, her.box[2] / WIDTH,
                                               her.box[3] / HEIGHT))])
    x0, y0, x1, y1 = her_box(0.5)
    found = [Detection(label="Person", score=0.97, box=(x0 - 6, y0 + 4, x1 + 5, y1 - 3)),
             Detection(label="Hard Hat", score=0.9, box=(x0 + 30, y0, x0 + 80, y0 + 40))]
    answer = CloudResult(site="s", frame_id=frame.frame_id, camera_id="wide", seq=5, capture_ts=frame.capture_ts,
                         processed_ts=frame.capture_ts + 1, width=WIDTH, height=HEIGHT, backend="rekognition",
                         model="rekognition-3.0",
                         detections=[d.model_copy(update={"track_id": frame.track_of(d.box)}) for d in found])
    cloud_set = detection_set_of(answer, None, frame.capture_ts + 1.2)
    fusion.add(cloud_set, 0.0)
    labels.learn(cloud_set)

    # 5 s later: 50 more frames the cloud never saw, her box still tracked by the edge.
    for seq in range(6, 56):
        latest = edge_set(carrier, seq)
        fusion.add(latest, 0.0)
    [later] = latest.detections
    assert later.track_id == her.track_id and latest.capture_ts - sent.capture_ts == 5.0
    boxes = boxes_for_frame(fusion, "wide", latest.capture_ts, WIDTH, HEIGHT)
    assert boxes is not None
    assert labels.text("wide", later.track_id) == "Person, Hard Hat"

    renderer = ProgramRenderer(1920, 1080, RenderOptions(camera_name=False, clock=False, pip=False))
    picture = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)

    def draw(track_labels: dict[int, str] | None) -> np.ndarray:
        shot = ShotPicture(picture, "wide", capture_ts=latest.capture_ts, detections=boxes.detections,
                           detections_size=boxes.size, track_labels=track_labels)
        return renderer.compose(shot).copy()

    with_label, without = draw(labels.for_camera("wide")), draw(None)
    changed = np.argwhere(np.any(with_label != without, axis=2))
    assert len(changed), "the cloud's label is not drawn"
    # ... right above her box as it is now (5 s on, 300 px further right), in the cloud's orange
    scale = 1920 / WIDTH
    bx0, by0, _, _ = (v * scale for v in her_box(5.5))
    assert changed[:, 1].min() >= bx0 - 2 and changed[:, 0].max() <= by0 + 2
    assert abs(changed[:, 1].min() - bx0) < 10
    assert any(tuple(with_label[y, x]) == (0, 140, 255) for y, x in changed)
    # a person the cloud said nothing about keeps the edge's own label
    assert labels.text("wide", later.track_id + 1) is None and labels.text("other", later.track_id) is None


def test_only_cloud_results_name_tracks_and_the_memory_is_bounded() -> None:
    labels = CloudTrackLabels(per_camera=3)
    edge = DetectionSet(camera_id="c", seq=1, frame_id="c-1", capture_ts=1.0, width=10, height=10, model="m",
                        provider="p", latency_ms=0.0, detections=[Detection(label="person", score=0.9,
                                                                             box=(0, 0, 5, 5), track_id=1)])
    labels.learn(edge)
    assert labels.for_camera("c") == {}
    for track_id in range(5):
        labels.learn(edge.model_copy(update={"source": "cloud", "detections": [
            Detection(label="Person", score=0.9, box=(0, 0, 5, 5), track_id=track_id)]}))
    assert labels.for_camera("c") == {2: "Person", 3: "Person", 4: "Person"}


def test_the_dashboard_shows_the_cloud_label_on_the_edge_box_of_the_same_track() -> None:
    from services.dashboard.site_state import SiteState
    from shared.site_config import ResolvedCamera

    camera = ResolvedCamera(id="wide", name="wide", source="synthetic", role="master", covers=None, width=WIDTH,
                            height=HEIGHT, fps=FPS)
    state = SiteState("site", [camera])
    carrier = TrackCarrier()
    first = edge_set(carrier, 0)
    [her] = first.detections
    cloud = first.model_copy(update={"source": "cloud", "detections": [
        Detection(label="Person", score=0.97, box=her.box, track_id=her.track_id)]})
    state.apply(first)
    state.apply(cloud)
    for seq in range(1, 51):  # 5 s of frames the cloud never saw
        [event] = state.apply(edge_set(carrier, seq))
    [box] = event["data"]["boxes"]
    assert box["cloud_label"] == "Person" and box["track_id"] == her.track_id and box["label"] == "person"
