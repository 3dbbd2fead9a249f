"""Carried boxes on real footage: how many of the boxes the edge's tracker carries lie where the reference sees nothing.

Edge inference carries each confirmed track over frames the detector missed it in (``TrackCarrier``), so a box
is drawn on every frame. A carried box is only a prediction; this counts, per clip, the carried boxes of the
watch labels (people and vehicles, ``--labels``) that overlap no reference detection of any label (IoU < 0.1
with every box the cloud-tier reference finds at score >= 0.3): boxes drawn where nothing is. The baselines in the same run are the detector's own boxes measured the same way,
and the carrier without its two limits (a box mostly out of the frame is not carried; a track is coasted over at
most MAX_COAST_MISSES analysed frames that missed it, or half as many as it was detected in), then with the
first only.

The per-frame results of both detectors come from ``hybridcam sampling-eval``'s cache (run it once on a clip to
make one; the repository's two clips carry theirs), so the figures need no detector run.

Usage: python bench/carried_boxes.py [VIDEO ...] [--cache-dir DIR] [--labels person,car,...]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hybridcam.sampling_eval.footage import FootageError, open_footage  # noqa: E402
from hybridcam.sampling_eval.reference import DetectorChoice, FrameResults, frame_results  # noqa: E402
from services.edge_infer.track_carrier import MAX_COAST_MISSES, MIN_IN_VIEW, TrackCarrier  # noqa: E402
from shared.schemas import Detection, DetectionSet  # noqa: E402
from shared.tracker import iou  # noqa: E402

DEFAULT_CLIPS = ("tests/data/video/one-by-one-person-detection.mp4", "tests/data/video/car-detection.mp4")
WATCH_LABELS = "person,bicycle,car,motorcycle,bus,truck"
REFERENCE_MIN_SCORE = 0.3
ON_NOTHING_IOU = 0.1


@dataclass
class Counts:
    boxes: int = 0
    on_nothing: int = 0

    def share(self) -> str:
        return f"{self.on_nothing / self.boxes:.0%}" if self.boxes else "-"


def on_nothing(box: tuple[float, float, float, float], references: list[tuple[float, float, float, float]]) -> bool:
    return all(iou(box, reference) < ON_NOTHING_IOU for reference in references)


UNLIMITED = 10**9


def measure(results: FrameResults, fps: float, width: int, height: int, min_in_view: float, max_coast_misses: int,
            labels: frozenset[str]) -> tuple[Counts, Counts]:
    """(the detector's boxes, the carried boxes) of the labels over every frame, both against the reference."""
    carrier = TrackCarrier(min_in_view=min_in_view, max_coast_misses=max_coast_misses)
    detected, carried = Counts(), Counts()
    for index, edge in enumerate(results.edge[:len(results.reference)]):
        found = DetectionSet(camera_id="clip", seq=index, frame_id=str(index), capture_ts=index / fps, width=width,
                             height=height, model="edge", provider="cache", latency_ms=0.0,
                             detections=[Detection(label=d[0], score=min(max(d[1], 0.0), 1.0), box=d[2:6]) for d in edge])
        found = carrier.observe(found)
        references = [tuple(d[2:6]) for d in results.reference[index] if d[1] >= REFERENCE_MIN_SCORE]
        for counts, boxes in ((detected, found.detections), (carried, carrier.coasting(found))):
            for item in (box for box in boxes if box.label in labels):
                counts.boxes += 1
                counts.on_nothing += on_nothing(item.box, references)  # type: ignore[arg-type]
    return detected, carried


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", default=list(DEFAULT_CLIPS), help="clips with a sampling-eval cache")
    parser.add_argument("--cache-dir", type=Path, help="sampling-eval's cache folder (default: its own default)")
    parser.add_argument("--labels", default=WATCH_LABELS, help=f"edge labels counted (default {WATCH_LABELS})")
    args = parser.parse_args()
    labels = frozenset(label.strip() for label in args.labels.split(",") if label.strip())
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"Boxes on nothing (IoU < {ON_NOTHING_IOU} with every reference box at score >= "
                        f"{REFERENCE_MIN_SCORE}), every frame analysed")
    for heading in ("clip", "detected boxes", "on nothing", "carried, no limits", "on nothing",
                    f"in view >= {MIN_IN_VIEW:.0%}", "on nothing", f"coasting <= max({MAX_COAST_MISSES}, detections / 2) misses", "on nothing",
                    "carried on something kept"):
        table.add_column(heading, justify="left" if heading == "clip" else "right")
    for video in args.videos:
        try:
            footage = open_footage(video)
            results = frame_results(footage, DetectorChoice(stride=0), args.cache_dir)
        except FootageError as error:
            console.print(f"{video}: {error}")
            continue
        if results.stride > 1:
            console.print(f"{video}: its cache has the detectors on every {results.stride}th frame only; "
                          f"this measure needs every frame (sampling-eval --detector-stride 1)")
            continue
        size = (results, footage.fps, footage.width, footage.height)
        detected, before = measure(*size, 0.0, UNLIMITED, labels)
        _, in_view = measure(*size, MIN_IN_VIEW, UNLIMITED, labels)
        _, after = measure(*size, MIN_IN_VIEW, MAX_COAST_MISSES, labels)
        kept = after.boxes - after.on_nothing
        good_before = before.boxes - before.on_nothing
        table.add_row(footage.name, str(detected.boxes), detected.share(), str(before.boxes), before.share(),
                      str(in_view.boxes), in_view.share(), str(after.boxes), after.share(), f"{kept}/{good_before}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
