"""Zones, rules and events on real footage: a room where three people walk in one at a time.

`one-by-one-person-detection.mp4` (73 s, Intel IoT devkit sample videos, CC BY 4.0) with the
reference detector's (CenterNet + NanoDet tiles) boxes on every frame, committed beside it. The
three visits start at frames 60, 227 and 506 (people step in from the bottom edge) and last about
13, 22 and 19 s. A poster-like shape at the top left is detected as a person now and then.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import av
import pytest

from services.events.replay import ReplayResult, replay_file
from shared.site_config import SiteConfig, parse_site

VIDEO = Path(__file__).parent / "data" / "video" / "one-by-one-person-detection.mp4"
FPS = 10.0
ORIGIN = 1_767_261_600.0  # 2026-01-01 10:00:00 UTC, a Thursday
VISITS_S = (6.0, 22.7, 50.6)  # when each person steps in
LONGEST_VISIT_S = 22.0
FLOOR = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
POSTER = [[0, 0.3], [0.6, 0.3], [0.6, 0.6], [0, 0.6]]  # where the false "person" stands
POSTER_MASK = [[0, 0], [0.6, 0], [0.6, 0.6], [0, 0.6]]


@pytest.fixture(scope="module")
def reference() -> list:
    with gzip.open(VIDEO.with_name("one-by-one-person-detection.detections.json.gz"), "rt") as stream:
        return json.load(stream)["reference"]


def room_site(rules: list[dict], masks: list | None = None, timezone: str = "UTC") -> SiteConfig:
    return parse_site({"site": "t", "cameras": [{
        "id": "room", "source": "synthetic", "role": "master", "width": 768, "height": 432,
        "zones": {"floor": FLOOR, "poster": POSTER}, "masks": masks or []}],
        "events": {"timezone": timezone, "pre_roll_s": 3, "post_roll_s": 2, "rules": rules}})


def replay(site: SiteConfig, reference: list, tmp_path: Path, **kwargs) -> ReplayResult:
    return replay_file(VIDEO, reference, site.events, site.scene("room"), tmp_path / "events", ORIGIN, FPS, **kwargs)


def test_an_enter_rule_gives_one_event_per_person_with_a_clip_that_holds_the_entry(reference, tmp_path: Path) -> None:
    site = room_site([{"name": "walk-in", "zone": "floor", "condition": {"kind": "enter"}}])
    result = replay(site, reference, tmp_path)
    events = [e for e in result.events if e["rule"] == "walk-in"]
    assert len(events) == len(VISITS_S)
    for event, entry in zip(events, VISITS_S):
        assert abs(event["start_ts"] - ORIGIN - entry) < 1.0, event
        assert event["end_ts"] > event["start_ts"] + 5 and event["labels"] == ["person"]
        clip = tmp_path / "events" / "media" / event["clip"]
        probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,nb_frames",
                                           "-show_entries", "format=duration", "-of", "json", str(clip)],
                                          capture_output=True, text=True, check=True).stdout)
        assert probe["streams"][0]["codec_name"] == "h264"  # the camera's own stream, remuxed
        duration = float(probe["format"]["duration"])
        assert event["clip_start_ts"] <= event["start_ts"] - 0.5  # pre-roll: the person before they count
        assert abs(event["clip_start_ts"] + duration - event["clip_end_ts"]) < 0.5
        assert event["clip_end_ts"] >= event["end_ts"]
        assert event["snapshot"] and (tmp_path / "events" / "media" / event["snapshot"]).stat().st_size > 10_000


def test_the_clip_shows_the_person_entering_to_the_reference_detector(reference, tmp_path: Path) -> None:
    from vision.detectors import load_detector

    site = room_site([{"name": "walk-in", "zone": "floor"}])
    event = replay(site, reference, tmp_path, snapshots=False).events[1]
    detector = load_detector("tiled", ["CPUExecutionProvider"], intra_op_num_threads=1)
    offset = event["start_ts"] - event["clip_start_ts"]
    with av.open(str(tmp_path / "events" / "media" / event["clip"])) as clip:
        stream = clip.streams.video[0]
        found = {}
        for frame in clip.decode(stream):
            t = float(frame.pts * stream.time_base)
            for probe_at in (offset - 2.0, offset + 1.0):  # before the entry the room is empty; after, a person
                if probe_at not in found and t >= probe_at:
                    detections = detector.detect(frame.to_ndarray(format="bgr24"))
                    found[probe_at] = [s for label, s in zip(detections.labels(), detections.scores) if label == "person" and s >= 0.5]
    assert found[offset + 1.0], "no person in the clip just after the event started"
    assert not found[offset - 2.0], "a person in the clip before anyone entered"


@pytest.mark.parametrize("seconds", [15.0, 25.0])
def test_a_dwell_rule_fires_only_past_its_threshold(reference, tmp_path: Path, seconds: float) -> None:
    site = room_site([{"name": "loiter", "zone": "floor", "condition": {"kind": "dwell", "seconds": seconds}}])
    events = replay(site, reference, tmp_path, snapshots=False).events
    if seconds > LONGEST_VISIT_S:
        assert events == []
        return
    assert len(events) == 2  # the 22 s and 19 s visits; the 13 s one stays under 15 s
    for event in events:
        assert event["opened_ts"] - event["start_ts"] >= seconds  # opened once the track had been inside that long


def test_a_masked_region_never_produces_an_event(reference, tmp_path: Path) -> None:
    rules = [{"name": "poster", "zone": "poster"}, {"name": "walk-in", "zone": "floor"}]
    unmasked = replay(room_site(rules), reference, tmp_path / "a", snapshots=False)
    masked = replay(room_site(rules, masks=[POSTER_MASK]), reference, tmp_path / "b", snapshots=False)
    assert len([e for e in unmasked.events if e["rule"] == "poster"]) >= 3  # the false person is there to mask
    assert [e for e in masked.events if e["rule"] == "poster"] == []
    assert masked.recorder.cameras["room"].tracks.drops.masked > 50
    assert len([e for e in masked.events if e["rule"] == "walk-in"]) == 3  # the real visitors still count


EVENTS_DATA = Path(__file__).parent / "data" / "events"
WORKER = EVENTS_DATA / "worker-zone-cut.mp4"  # a worker walks from the front of the floor to its left side
STORE = Path(__file__).parent / "data" / "clips" / "store-aisle-cut.mp4"  # two shoppers; a third steps in at ~1.7 s
WORK_AREA = [[0.0, 0.7], [0.4, 0.7], [0.4, 0.9], [0.0, 0.9]]
AISLE = [[0.3, 0.2], [1.0, 0.2], [1.0, 1.0], [0.3, 1.0]]


def small_site(camera_id: str, zone: list, rules: list[dict], masks: list | None = None) -> SiteConfig:
    return parse_site({"site": "t", "cameras": [{"id": camera_id, "source": "synthetic", "role": "master", "width": 480,
                                                 "height": 270, "zones": {"area": zone}, "masks": masks or []}],
                       "events": {"pre_roll_s": 1, "post_roll_s": 1, "rules": rules}})


def replay_small(video: Path, camera_id: str, site: SiteConfig, tmp_path: Path) -> ReplayResult:
    frames = json.loads(video.with_suffix(".detections.json").read_text() if video.parent == EVENTS_DATA
                        else (EVENTS_DATA / f"{video.stem}.detections.json").read_text())["frames"]
    return replay_file(video, frames, site.events, site.scene(camera_id), tmp_path, ORIGIN, 15.0, snapshots=False)


def test_on_the_factory_floor_one_worker_gives_one_event_and_a_mask_over_the_area_none(tmp_path: Path) -> None:
    rules = [{"name": "work-area", "zone": "area"}, {"name": "linger", "zone": "area", "condition": {"kind": "dwell", "seconds": 10}}]
    result = replay_small(WORKER, "floor", small_site("floor", WORK_AREA, rules), tmp_path / "a")
    entered = [e for e in result.events if e["rule"] == "work-area"]
    assert len(entered) == 1 and entered[0]["clip"]
    assert 0.5 < entered[0]["start_ts"] - ORIGIN < 3.0  # the worker reaches the area part-way through the 4.7 s clip
    assert not [e for e in result.events if e["rule"] == "linger"]  # nobody stays 10 s in a 4.7 s clip
    masked = replay_small(WORKER, "floor", small_site("floor", WORK_AREA, rules, masks=[[[0, 0.6], [0.45, 0.6], [0.45, 1], [0, 1]]]),
                          tmp_path / "b")
    assert masked.events == []


def test_in_the_store_a_count_rule_opens_when_a_third_shopper_steps_into_the_aisle(tmp_path: Path) -> None:
    rules = [{"name": "busy", "zone": "area", "condition": {"kind": "count", "more_than": 2}},
             {"name": "crowd", "zone": "area", "condition": {"kind": "count", "more_than": 4}}]
    result = replay_small(STORE, "aisle", small_site("aisle", AISLE, rules), tmp_path)
    busy = [e for e in result.events if e["rule"] == "busy"]
    assert len(busy) == 1 and 1.0 < busy[0]["start_ts"] - ORIGIN < 3.0 and len(busy[0]["track_ids"]) >= 3
    assert not [e for e in result.events if e["rule"] == "crowd"]  # never five (the detector boxes one shopper twice at times)
