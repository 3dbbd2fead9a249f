"""Cloud answers stay on the edge's tracks: the Lambda names the tracked object each finding is about,
and alerts once per tracked object and label instead of once per frame and cooldown."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from shared.schemas import CloudFrame, FrameTrack, decode
from tests.fixtures.cloud import CloudResources, event_of, make_frame
from tests.test_cloud_handler import PERSON_BOX, Harness

HER = FrameTrack(track_id=1733400000007, label="person", box=(0.3, 0.25, 0.425, 0.9))
HIM = FrameTrack(track_id=1733400000008, label="person", box=(0.6, 0.3, 0.7, 0.9))
HIS_BOX = {"Width": 0.1, "Height": 0.6, "Left": 0.6, "Top": 0.3}


def answer(*boxes: dict[str, float]) -> dict[str, Any]:
    return {"Labels": [{"Name": "Person", "Confidence": 98.0, "Parents": [], "Categories": [],
                        "Instances": [{"BoundingBox": box, "Confidence": 97.0} for box in boxes]},
                       {"Name": "Hard Hat", "Confidence": 91.0, "Parents": [], "Categories": [],
                        "Instances": [{"BoundingBox": {"Width": 0.06, "Height": 0.08, "Left": 0.33, "Top": 0.25},
                                       "Confidence": 90.0}]}],
            "LabelModelVersion": "3.0"}


def stay(harness: Harness, frames: list[CloudFrame], *boxes: dict[str, float]) -> dict[int, list[str]]:
    for _ in frames:
        harness.expect_detect(answer=answer(*boxes))
    assert harness.handle(event_of(*(frame.encode() for frame in frames))) == []
    return {result.seq: result.alerts for result in harness.results()}


def test_cloud_findings_carry_the_track_they_are_about(lambda_modules: dict[str, ModuleType],
                                                        cloud_resources: CloudResources) -> None:
    harness = Harness(lambda_modules, cloud_resources)
    harness.expect_detect(answer=answer(PERSON_BOX, HIS_BOX))
    assert harness.handle(event_of(make_frame(tracks=[HER, HIM]).encode())) == []
    [result] = harness.results()
    named = sorted((d.label, d.track_id) for d in result.detections)
    # her box overlaps her track; the hard hat lies inside her box; his box overlaps his track
    assert named == [("Hard Hat", HER.track_id), ("Person", HER.track_id), ("Person", HIM.track_id)]


def test_one_alert_per_person_across_a_long_stay_and_a_second_person_within_the_cooldown(
        lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources) -> None:
    # Cooldown 0: the per-frame rule would alert on every frame of her ten-minute stay.
    harness = Harness(lambda_modules, cloud_resources, ALERT_COOLDOWN_S="0")
    her_stay = [make_frame(seq=seq, capture_ts=1767225600.0 + 30 * seq, tracks=[HER]) for seq in range(1, 21)]
    alerts = stay(harness, her_stay, PERSON_BOX)
    assert alerts[1] == ["Person"] and all(alerts[seq] == [] for seq in range(2, 21))
    assert len(harness.resources.alert_texts()) == 1

    # A long cooldown holds for the camera and label, yet a second person is a second alert.
    harness = Harness(lambda_modules, cloud_resources, ALERT_COOLDOWN_S="3600")
    frames = [make_frame(camera_id="cam2", seq=1, tracks=[HER]),
              make_frame(camera_id="cam2", seq=2, capture_ts=1767225610.0, tracks=[HER, HIM])]
    harness.expect_detect(answer=answer(PERSON_BOX))
    harness.expect_detect(answer=answer(PERSON_BOX, HIS_BOX))
    assert harness.handle(event_of(*(frame.encode() for frame in frames))) == []
    assert {r.seq: r.alerts for r in harness.results()} == {1: ["Person"], 2: ["Person"]}
    assert len(harness.resources.alert_texts()) == 2


def test_an_untracked_frame_keeps_the_cooldown_per_camera_and_label(lambda_modules: dict[str, ModuleType],
                                                                     cloud_resources: CloudResources) -> None:
    harness = Harness(lambda_modules, cloud_resources)
    frames = [make_frame(seq=1), make_frame(seq=2, capture_ts=1767225610.0)]
    assert stay(harness, frames, PERSON_BOX, HIS_BOX) == {1: ["Person"], 2: []}


def test_a_version_1_cloud_frame_still_decodes_without_tracks() -> None:
    import msgpack

    body = make_frame().model_dump(mode="python")
    body.pop("tracks")
    message = decode(msgpack.packb({**body, "schema": "cloud_frame", "v": 1}, use_bin_type=True))
    assert isinstance(message, CloudFrame) and message.tracks == []
    with pytest.raises(ValueError):
        FrameTrack(track_id=1, label="person", box=(0.0, 0.0, 1.5, 1.0))  # boxes are normalised
