"""Zones, masks and filters in the site file; the count and cross conditions; the event store's retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.events.rule_engine import CameraRules, TrackedObject
from shared.errors import ConfigError
from shared.event_store import EventStore
from shared.site_config import parse_site
from shared.zones import point_in_polygon

SQUARE = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]


def site(camera: dict | None = None, rules: list | None = None, **events) -> dict:
    master = {"id": "wide", "source": "synthetic", "role": "master", "zones": {"lobby": SQUARE}, **(camera or {})}
    slave = {"id": "zoom", "source": "synthetic", "covers": {"master": "wide", "region": [0.5, 0.0, 1.0, 0.5]}}
    return {"site": "t", "cameras": [master, slave], "events": {"rules": rules or [], **events}}


@pytest.mark.parametrize("change, message", [
    ({"zones": {"lobby": [[0.1, 0.1], [0.5, 0.5]]}}, "a polygon needs 3 to 64 points"),
    ({"zones": {"lobby": [[0.1, 0.1], [1.5, 0.5], [0.2, 0.9]]}}, "outside the picture: coordinates are fractions 0..1"),
    ({"masks": [[[0, 0], [0.5, 0.5], [1, 1]]]}, "a polygon must enclose an area"),
    ({"lines": {"gate": [[0.1, 0.1], [0.1, 0.1]]}}, "a line needs two different points"),
    ({"filters": {"person": {"min_area": 0.5, "max_area": 0.1}}}, "an object filter needs min_area < max_area"),
    ({"zones": {"the lobby": SQUARE}}, "may use only letters, digits"),
])
def test_bad_zones_masks_lines_and_filters_are_one_sentence(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_site(site(change))
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("rules, events, message", [
    ([{"name": "r", "zone": "hall"}], {}, "rule 'r' names zone 'hall', which no camera it watches has"),
    ([{"name": "r", "condition": {"kind": "cross"}}], {}, "rule 'r' is a cross rule and needs a line"),
    ([{"name": "r", "zone": "lobby", "cameras": ["nope"]}], {}, "rule 'r' names camera 'nope', which is not in the site"),
    ([{"name": "r", "zone": "lobby"}, {"name": "r", "zone": "lobby"}], {}, "rule names must be unique, repeated: r"),
    ([{"name": "r", "zone": "lobby", "schedule": [{"days": ["moon"]}]}], {}, "events.rules.0.schedule.0.days.0"),
    ([], {"timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus' is not an IANA name"),
])
def test_bad_rules_are_one_sentence(rules: list, events: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_site(site(rules=rules, **events))
    assert message in str(raised.value)


def test_a_zone_and_mask_on_a_master_apply_to_its_slave_through_covers() -> None:
    parsed = parse_site(site({"masks": [[[0.5, 0.0], [1.0, 0.0], [1.0, 0.1], [0.5, 0.1]]]}))
    zoom = parsed.scene("zoom")  # shows x 0.5..1, y 0..0.5 of the master
    lobby = zoom.zones["lobby"]
    assert lobby[0] == pytest.approx((-0.6, 0.4)) and lobby[2] == pytest.approx((0.2, 1.2))
    assert point_in_polygon(0.1, 0.8, lobby)  # master (0.55, 0.4): inside the lobby
    assert not point_in_polygon(0.3, 0.8, lobby)  # master (0.65, 0.4): outside
    assert zoom.masked((0.5, 0.1)) and not zoom.masked((0.5, 0.5))  # the mask covers the slave's top fifth
    assert zoom.as_json()["zones"]["lobby"][0] == pytest.approx([-0.6, 0.4])


def test_object_filters_drop_what_is_too_small_too_unsure_or_the_wrong_shape() -> None:
    scene = parse_site(site({"filters": {"person": {"min_score": 0.5, "min_area": 0.01, "max_ratio": 1.0}}})).scene("wide")
    assert scene.keeps("person", 0.9, (100, 100, 200, 400), 1000, 1000)
    assert not scene.keeps("person", 0.4, (100, 100, 200, 400), 1000, 1000)  # unsure
    assert not scene.keeps("person", 0.9, (100, 100, 120, 140), 1000, 1000)  # 0.08% of the picture
    assert not scene.keeps("person", 0.9, (100, 100, 500, 200), 1000, 1000)  # lying flat: wider than tall
    assert scene.keeps("car", 0.1, (100, 100, 500, 200), 1000, 1000)  # no filter for cars


def person(track: int, x: float, y: float) -> TrackedObject:
    return TrackedObject(track, "person", 0.9, (x * 1000 - 50, y * 1000 - 300, x * 1000 + 50, y * 1000), (x, y))


def test_count_opens_only_when_more_than_k_are_inside() -> None:
    parsed = parse_site(site(rules=[{"name": "crowd", "zone": "lobby", "inertia": 1,
                                     "condition": {"kind": "count", "more_than": 2}}]))
    rules = CameraRules(parsed.scene("wide"), parsed.events.rules, parsed.events.zone_info, close_after_s=1.0)
    assert rules.step(0.0, [person(1, 0.3, 0.3), person(2, 0.4, 0.4)]) == []
    assert rules.step(0.1, [person(1, 0.3, 0.3), person(2, 0.4, 0.4), person(3, 0.9, 0.9)]) == []  # third is outside
    opened = rules.step(0.2, [person(1, 0.3, 0.3), person(2, 0.4, 0.4), person(3, 0.5, 0.5)])
    assert [t.kind for t in opened] == ["opened"] and opened[0].event.track_ids == {1, 2, 3}
    assert rules.step(0.5, [person(1, 0.3, 0.3)]) == []
    assert [t.kind for t in rules.step(1.3, [person(1, 0.3, 0.3)])] == ["closed"]


@pytest.mark.parametrize("direction, expected", [("left_to_right", {1}), ("right_to_left", {2}), ("any", {1, 2})])
def test_cross_counts_only_its_direction(direction: str, expected: set[int]) -> None:
    """Sides as seen walking the line from its first point to its second: for a line drawn left to right
    across the picture, left_to_right is moving down the picture."""
    parsed = parse_site(site({"lines": {"door": [[0.1, 0.5], [0.9, 0.5]]}},
                             rules=[{"name": "through", "line": "door", "condition": {"kind": "cross", "direction": direction}}]))
    rules = CameraRules(parsed.scene("wide"), parsed.events.rules, parsed.events.zone_info, close_after_s=0.5)
    crossed: set[int] = set()
    for i in range(40):
        down = person(1, 0.3, 0.33 + i * 0.02)  # crosses at step 9 (y 0.51)
        up = person(2, 0.7, 0.97 - max(0, i - 20) * 0.03)  # starts up at step 20, crosses at step 36
        for t in rules.step(i * 0.1, [down, up]):
            if t.kind != "closed":
                crossed |= set(t.new_tracks)
    assert crossed == expected
    beside = parse_site(site({"lines": {"door": [[0.4, 0.5], [0.9, 0.5]]}},
                             rules=[{"name": "through", "line": "door", "condition": {"kind": "cross"}}]))
    rules = CameraRules(beside.scene("wide"), beside.events.rules, beside.events.zone_info, close_after_s=0.5)
    assert not [t for i in range(40) for t in rules.step(i * 0.1, [person(1, 0.3, 0.33 + i * 0.02)])]  # passes beside its end


def test_retention_removes_old_events_and_the_oldest_clips_beyond_the_budget(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    now = time.time()
    for i, age_days in enumerate([40, 20, 10, 1]):
        start = now - age_days * 86_400
        event_id = f"e{i}"
        store.open_event(event_id, "cam", "r", "z", "low", ["person"], [1], start, start)
        clip = store.media_path("cam", event_id, ".mp4", start)
        clip.write_bytes(os.urandom(1000))
        store.attach_file(event_id, "clip", clip)
        store.update_event(event_id, end_ts=start + 5, state="closed")
    report = store.enforce_retention(now, days=30, budget_bytes=2500)
    assert report.events_removed == 1 and report.clips_removed == 2  # e0 by age; e1's clip by the budget
    remaining = {e["id"]: e for e in store.events()}
    assert set(remaining) == {"e1", "e2", "e3"} and remaining["e1"]["clip"] is None
    assert remaining["e2"]["clip"] and remaining["e3"]["clip"] and store.used_bytes() == 2000
    files = sorted(p.name for p in (tmp_path / "media").rglob("*.mp4"))
    assert files == ["e2.mp4", "e3.mp4"]


def test_reconcile_after_a_crash_closes_open_events_and_drops_dangling_files(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.open_event("open", "cam", "r", "z", "low", ["person"], [1], 100.0, 101.0)
    store.open_event("gone", "cam", "r", "z", "low", ["person"], [1], 100.0, 101.0)
    gone = store.media_path("cam", "gone", ".mp4", 100.0)
    gone.write_bytes(b"x" * 10)
    store.attach_file("gone", "clip", gone)
    gone.unlink()
    (store.media_path("cam", "half", ".mp4", 100.0).with_suffix(".mp4.partial")).write_bytes(b"x")
    store.close()
    store = EventStore(tmp_path)
    counts = store.reconcile(now=200.0)
    assert counts == {"closed": 2, "missing_files": 1, "orphan_files": 1}
    assert {e["state"] for e in store.events()} == {"interrupted"} and store.event("gone")["clip"] is None


def test_a_mask_hides_motion_from_the_scene_change_measure() -> None:
    import numpy as np

    from shared.scene_change import SceneChangeDetector

    still = np.full((360, 640, 3), 90, np.uint8)
    clock = still.copy()
    clock[20:80, 20:120] = 250  # something changes in the top-left corner only
    plain, masked = SceneChangeDetector(), SceneChangeDetector(ignore=[[(0.0, 0.0), (0.25, 0.0), (0.25, 0.3), (0.0, 0.3)]])
    for detector in (plain, masked):
        detector.set_reference(still)
    assert plain.features(clock).changed_fraction > 0.01
    assert masked.features(clock).changed_fraction == 0.0
    walker = still.copy()
    walker[200:340, 300:360] = 10  # a change outside the mask still counts
    assert masked.features(walker).changed_fraction > 0.01


def test_edge_inference_drops_masked_and_filtered_detections_before_publishing(redis_server) -> None:
    import numpy as np

    from services.edge_infer.inference_loop import InferenceLoop
    from shared.schemas import FrameRef
    from shared.stream_bus import StreamBus
    from vision.detectors.base import Detections
    from vision.detectors.registry import load_detector

    scene = parse_site(site({"masks": [[[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]],
                             "filters": {"person": {"min_score": 0.5}}})).scene("wide")
    loop = InferenceLoop(StreamBus(redis_server.url), load_detector("nanodet"), [], "g", "c", scenes={"wide": scene})
    found = Detections(boxes=np.array([[100, 100, 200, 400], [600, 300, 700, 900], [600, 300, 700, 900]], np.float32),
                       scores=np.array([0.9, 0.9, 0.3], np.float32), class_ids=np.zeros(3, np.int32))
    ref = FrameRef(camera_id="wide", seq=1, capture_ts=1.0, width=1000, height=1000)
    published = loop._detection_set(ref, found)
    assert [d.box[0] for d in published.detections] == [600]  # the first stands in the mask, the third is unsure
    assert loop.counters["wide"].masked == 2


def test_the_samplers_change_measure_ignores_a_masters_masks() -> None:
    from services.sampler.service import build_policy
    from services.sampler.settings import SamplerSettings
    from shared.settings import load_settings

    parsed = parse_site(site({"masks": [[[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]]}))
    policy = build_policy(load_settings(SamplerSettings, sampler_policy="adaptive"), parsed)
    assert policy.camera("wide").detector.ignore == parsed.scene("wide").masks  # type: ignore[attr-defined]


def test_faces_remove_forgets_the_name_in_the_edges_stored_events(tmp_path: Path) -> None:
    from cloud.faces_commands import forget_in_events

    store = EventStore(tmp_path)
    for event_id, people in (("a", "Ana Lima"), ("b", "Ana Lima, Rui Sousa"), ("c", "Rui Sousa")):
        store.open_event(event_id, "cam", "r", "z", "low", ["person"], [1], 100.0, 100.0)
        store.update_event(event_id, face_match=people)
    store.close()
    assert forget_in_events(tmp_path, "Ana Lima") == 2
    store = EventStore(tmp_path)
    assert [store.event(e)["face_match"] for e in "abc"] == [None, "Rui Sousa", "Rui Sousa"]
