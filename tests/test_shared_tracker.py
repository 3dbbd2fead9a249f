"""The one tracker edge inference and the compositor share: matching, velocity, carried boxes."""

from __future__ import annotations

import pytest

from services.edge_infer.track_carrier import TrackCarrier
from shared.schemas import Detection, DetectionSet, FrameRef
from shared.tracker import IouTracker


def test_a_walking_box_is_carried_forward_at_its_velocity() -> None:
    tracker = IouTracker()
    for step in range(4):
        tracker.update([(0.1 + 0.05 * step, 0.2, 0.2 + 0.05 * step, 0.6)], ts=step * 0.2, scores=[0.8])
    [(track, box)] = tracker.predict(0.8)  # one step past the last detection
    assert track.velocity[0] == pytest.approx(0.25, rel=0.05)
    assert box == pytest.approx((0.30, 0.2, 0.40, 0.6), abs=0.01)  # last box 0.25-0.35, moved 0.05
    assert track.hits == 4 and track.score == 0.8


def test_predictions_end_when_the_track_ages_out() -> None:
    tracker = IouTracker(max_age_s=1.0)
    tracker.update([(0.1, 0.1, 0.2, 0.3)], ts=0.0)
    assert len(tracker.predict(0.9)) == 1
    assert tracker.predict(1.5) == []


def test_carrier_marks_carried_boxes_as_tracked_in_frame_pixels() -> None:
    carrier = TrackCarrier()
    detections = [Detection(label="person", class_id=0, score=0.9, box=(100.0, 100.0, 200.0, 400.0))]
    for seq, shift in ((1, 0.0), (2, 20.0)):
        moved = [d.model_copy(update={"box": (100.0 + shift, 100.0, 200.0 + shift, 400.0)}) for d in detections]
        observed = carrier.observe(DetectionSet(camera_id="c", seq=seq, frame_id=f"c-{seq}", capture_ts=seq * 0.1,
                                                width=1000, height=500, model="m", provider="p", latency_ms=1.0,
                                                detections=moved))
    assert carrier.has_tracks("c", 0.3)
    carried = carrier.carried_set(FrameRef(camera_id="c", seq=3, capture_ts=0.3, width=1000, height=500), "m", "p")
    assert carried.tracked and carried.inference_ms == 0.0
    [box] = carried.detections
    assert box.tracked and box.track_id == observed.detections[0].track_id and box.label == "person"
    assert box.box == pytest.approx((140.0, 100.0, 240.0, 400.0), abs=1.0)
    assert DetectionSet.model_validate(carried.model_dump()).detections[0].tracked


def test_carrier_gives_every_detected_box_its_track_id_unique_across_labels() -> None:
    carrier = TrackCarrier()
    ids = []
    for seq in range(3):
        boxes = [Detection(label="person", score=0.9, box=(100.0, 100.0, 200.0, 400.0)),
                 Detection(label="car", score=0.8, box=(500.0, 300.0, 700.0, 450.0))]
        result = carrier.observe(DetectionSet(camera_id="c", seq=seq, frame_id=f"c-{seq}", capture_ts=seq * 0.1,
                                              width=1000, height=500, model="m", provider="p", latency_ms=1.0,
                                              detections=boxes))
        ids.append(tuple(d.track_id for d in result.detections))
    person, car = ids[0]
    assert person is not None and car is not None and person != car  # one tracker per label, one id space per camera
    assert ids == [(person, car)] * 3  # the same objects keep their ids


def test_a_box_carried_out_of_the_frame_is_not_carried_any_more() -> None:
    """A car driving out to the right: once its predicted box is mostly outside the frame, nothing is drawn."""
    carrier = TrackCarrier()
    for seq in range(3):  # 100 px per 0.1 s to the right, the last one touching the border
        x = 700.0 + 100.0 * seq
        carrier.observe(DetectionSet(camera_id="c", seq=seq, frame_id=f"c-{seq}", capture_ts=seq * 0.1, width=1000,
                                     height=500, model="m", provider="p", latency_ms=1.0,
                                     detections=[Detection(label="car", score=0.9, box=(x - 100.0, 200.0, x, 300.0))]))
    assert [d.box[2] for d in carrier.carried("c", 0.25, 1000, 500)] == [pytest.approx(950.0, abs=1.0)]  # in view
    assert len(carrier.carried("c", 0.34, 1000, 500)) == 1  # 60% of it still inside
    assert carrier.carried("c", 0.4, 1000, 500) == []  # all of it past the border
    empty = DetectionSet(camera_id="c", seq=4, frame_id="c-4", capture_ts=0.4, width=1000, height=500, model="m",
                         provider="p", latency_ms=1.0, detections=[])
    assert carrier.coasting(carrier.observe(empty)) == []  # nor coasted on an analysed frame that misses it


def test_a_track_the_detector_keeps_missing_is_coasted_over_five_analysed_frames_or_half_its_detections() -> None:
    carrier = TrackCarrier()

    def analysed(seq: int, boxes: list[Detection]) -> tuple[DetectionSet, list[Detection]]:
        found = carrier.observe(DetectionSet(camera_id="c", seq=seq, frame_id=f"c-{seq}", capture_ts=seq * 0.04,
                                             width=1000, height=500, model="m", provider="p", latency_ms=1.0,
                                             detections=boxes))
        return found, carrier.coasting(found)

    person = Detection(label="person", score=0.9, box=(400.0, 100.0, 500.0, 400.0))
    for seq in range(3):
        analysed(seq, [person])
    coasted = [len(analysed(seq, [])[1]) for seq in range(3, 10)]  # missed 7 times in a row, within MAX_CARRY_S
    assert coasted == [1, 1, 1, 1, 1, 0, 0]
    assert carrier.carried("c", 9.5 * 0.04, 1000, 500) == []  # nor carried over a skipped frame any more
    analysed(10, [person])  # seen again: the count starts over
    assert [len(analysed(seq, [])[1]) for seq in range(11, 13)] == [1, 1]
    assert len(carrier.carried("c", 12.5 * 0.04, 1000, 500)) == 1  # a skipped frame still gets its carried box
    for seq in range(13, 33):  # detected 20 more times (24 in all): bridged over 12 misses
        analysed(seq, [person])
    assert [len(analysed(seq, [])[1]) for seq in range(33, 47)] == [1] * 12 + [0, 0]
