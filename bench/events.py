"""Events benchmark: events raised against events that happened, and what masks and object filters change.

1. Real footage: `one-by-one-person-detection.mp4` (73 s, three people visit a room one at a time), with
   the committed per-frame boxes of the edge detector (NanoDet) and of the reference detector (CenterNet +
   NanoDet tiles). What happened: three visits (seen in the footage; the README of tests/data/video says
   so). A zone `enter` rule on the floor and one on the whole picture, each without and with the mask over
   the top-left corner (a shape the detectors sometimes call a person) and an object filter (a standing
   person is taller than wide).
2. The synthetic scene with its ground truth: NanoDet on the rendered master camera, an `enter` rule on a
   zone in the middle of the beach; what happened is every episode in which at least one person (ground
   truth, at least half visible) stands in the zone, episodes closer than the rule's close-after merged.

An event is correct when it overlaps an episode that no earlier event took; every other event is a false
positive (spurious or a duplicate); an episode no event overlaps is missed.

Usage: python bench/events.py [--synthetic-seconds 60] [--fps 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.events.event_recorder import EventRecorder  # noqa: E402
from shared.event_store import EventStore  # noqa: E402
from shared.schemas import Detection, DetectionSet  # noqa: E402
from shared.site_config import SiteConfig, parse_site  # noqa: E402
from shared.zones import foot_point, point_in_polygon  # noqa: E402

VIDEO = REPO / "tests" / "data" / "video" / "one-by-one-person-detection.mp4"
VISITS = [(6.0, 19.5), (22.7, 44.5), (50.6, 69.7)]  # seconds into the clip: three people, one at a time
FLOOR = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
WHOLE = [[0, 0], [1, 0], [1, 1], [0, 1]]
CORNER_MASK = [[0, 0], [0.6, 0], [0.6, 0.6], [0, 0.6]]
CORNER = [[0, 0.3], [0.6, 0.3], [0.6, 0.6], [0, 0.6]]  # where the false person stands; nobody walks there
STANDING = {"person": {"max_ratio": 0.9, "min_area": 0.01}}
BEACH_ZONE = [[0.3, 0.45], [0.7, 0.45], [0.7, 0.85], [0.3, 0.85]]
BEACH_MASK = [[0.3, 0.45], [0.45, 0.45], [0.45, 0.85], [0.3, 0.85]]  # the zone's left part
BEACH_FILTER = {"person": {"min_score": 0.45}}


def site_of(zone: list, masks: list, filters: dict, width: int, height: int, fps: float) -> SiteConfig:
    return parse_site({"site": "bench", "cameras": [{"id": "cam", "source": "synthetic", "role": "master", "width": width,
                                                      "height": height, "fps": fps, "zones": {"zone": zone}, "masks": masks,
                                                      "filters": filters}],
                       "events": {"rules": [{"name": "enter", "zone": "zone"}]}})


def run_rules(frames: list[list], site: SiteConfig, fps: float, width: int, height: int) -> list[tuple[float, float]]:
    """(start, end) in seconds of every event the rule raises over per-frame detections."""
    with tempfile.TemporaryDirectory() as folder:
        store = EventStore(Path(folder))
        recorder = EventRecorder(store, site.events, {"cam": site.scene("cam")})
        for index, found in enumerate(frames):
            recorder.on_detections(DetectionSet(
                camera_id="cam", seq=index, frame_id=f"cam-{index}", capture_ts=index / fps, width=width, height=height,
                model="bench", provider="file", latency_ms=0.0,
                detections=[Detection(label=d[0], score=d[1], box=tuple(d[2:6])) for d in found]))
        recorder.flush(len(frames) / fps)
        events = [(e["start_ts"], e["end_ts"]) for e in store.events()]
        store.close()
    return sorted(events)


def score(events: list[tuple[float, float]], episodes: list[tuple[float, float]]) -> tuple[int, int, int, str]:
    """(correct, false positives, missed, mean delay of a correct event's start after its episode's start)."""
    taken: set[int] = set()
    delays = []
    for start, end in events:
        match = next((i for i, (a, b) in enumerate(episodes) if i not in taken and start <= b and end >= a), None)
        if match is not None:
            taken.add(match)
            delays.append(start - episodes[match][0])
    delay = f"{sum(delays) / len(delays):.1f} s" if delays else "-"
    return len(delays), len(events) - len(delays), len(episodes) - len(taken), delay


def real_clip(console: Console) -> None:
    with gzip.open(VIDEO.with_name("one-by-one-person-detection.detections.json.gz"), "rt") as stream:
        cached = json.load(stream)
    table = Table(title=f"1. {VIDEO.name}: {len(VISITS)} visits in 73 s, rule `enter`")
    for column in ("detector", "zone", "mask", "filter", "events", "correct", "false positives", "missed", "start delay"):
        table.add_column(column)
    for detector in ("reference", "edge"):
        for zone_name, zone, visits in (("floor", FLOOR, VISITS), ("whole picture", WHOLE, VISITS), ("corner", CORNER, [])):
            for masked in (False, True):
                for filtered in (False, True):
                    site = site_of(zone, [CORNER_MASK] if masked else [], STANDING if filtered else {}, 768, 432, 10.0)
                    events = run_rules(cached[detector], site, 10.0, 768, 432)
                    correct, false, missed, delay = score(events, visits)
                    table.add_row(detector, zone_name, "yes" if masked else "-", "yes" if filtered else "-", str(len(events)),
                                  str(correct), str(false), str(missed), delay)
    console.print(table)


def synthetic_episodes(scene, seconds: float, fps: float, width: int, height: int, close_after_s: float,
                       masks: list) -> list[tuple[float, float]]:
    inside_times = []
    for index in range(int(seconds * fps)):
        t = index / fps
        for person in scene.ground_truth("cam", t):
            if person.visible_fraction < 0.5:
                continue
            foot = foot_point(person.box, width, height)
            if point_in_polygon(*foot, BEACH_ZONE) and not any(point_in_polygon(*foot, m) for m in masks):
                inside_times.append(t)
                break
    episodes: list[list[float]] = []
    for t in inside_times:
        if episodes and t - episodes[-1][1] <= close_after_s + 1.5:  # the tracker keeps a lost person 1.5 s
            episodes[-1][1] = t
        else:
            episodes.append([t, t])
    return [(a, b) for a, b in episodes]


def synthetic(console: Console, seconds: float, fps: float) -> None:
    from services.capture.synthetic_scene import SyntheticScene, ViewRegion, VirtualCamera
    from vision.detectors import load_detector

    width, height = 1280, 720
    scene = SyntheticScene([VirtualCamera("cam", "master", ViewRegion(0.0, 0.0, 1.0, 1.0), width, height)], seed=7, people=6)
    detector = load_detector("nanodet", ["CPUExecutionProvider"])
    started = time.monotonic()
    frames = []
    for index in range(int(seconds * fps)):
        found = detector.detect(scene.render("cam", index / fps))
        frames.append([[label, float(s), *map(float, box)] for label, s, box in zip(found.labels(), found.scores, found.boxes)
                       if label == "person"])
    table = Table(title=f"2. synthetic scene, 6 people wandering, {seconds:.0f} s at {fps:g} fps (NanoDet, "
                        f"{time.monotonic() - started:.0f} s to detect), rule `enter` on a zone mid-beach")
    for column in ("mask", "filter", "episodes (ground truth)", "events", "correct", "false positives", "missed", "start delay"):
        table.add_column(column)
    for masked in (False, True):
        for filtered in (False, True):
            masks = [BEACH_MASK] if masked else []
            site = site_of(BEACH_ZONE, masks, BEACH_FILTER if filtered else {}, width, height, fps)
            episodes = synthetic_episodes(scene, seconds, fps, width, height, site.events.close_after_s, masks)
            events = run_rules(frames, site, fps, width, height)
            correct, false, missed, delay = score(events, episodes)
            table.add_row("zone's left part" if masked else "-", "score >= 0.45" if filtered else "-", str(len(episodes)),
                          str(len(events)), str(correct), str(false), str(missed), delay)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic-seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=5.0, help="rate the synthetic scene is detected at")
    args = parser.parse_args()
    console = Console(width=140)
    real_clip(console)
    synthetic(console, args.synthetic_seconds, args.fps)


if __name__ == "__main__":
    main()
