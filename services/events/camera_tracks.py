"""Detections of one camera → tracked objects, after its masks and object filters.

The events service keeps its own tracks (shared/tracker.py, one tracker per label) so rules do not
depend on whether edge inference numbered its boxes. A track missing for a frame or two keeps its
last box until the tracker forgets it (``max_age_s``), so dwell timers survive a missed detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.events.rule_engine import TrackedObject
from shared.schemas import DetectionSet
from shared.tracker import IouTracker
from shared.zones import CameraScene, foot_point


@dataclass
class DropCounts:
    masked: int = 0
    filtered: int = 0


@dataclass
class CameraTracks:
    scene: CameraScene
    max_age_s: float = 1.5
    trackers: dict[str, IouTracker] = field(default_factory=dict)
    drops: DropCounts = field(default_factory=DropCounts)
    _ids: dict[tuple[str, int], int] = field(default_factory=dict)
    _next_id: int = 1

    def update(self, result: DetectionSet) -> list[TrackedObject]:
        width, height = result.width, result.height
        by_label: dict[str, list[tuple[tuple[float, float, float, float], float]]] = {}
        for det in result.detections:
            if not self.scene.keeps(det.label, det.score, det.box, width, height):
                self._count_drop(det.label, det.score, det.box, width, height)
                continue
            by_label.setdefault(det.label, []).append((det.box, det.score))
        objects = []
        for label in set(by_label) | set(self.trackers):
            tracker = self.trackers.setdefault(label, IouTracker(max_age_s=self.max_age_s))
            found = by_label.get(label, [])
            boxes = [(b[0] / width, b[1] / height, b[2] / width, b[3] / height) for b, _ in found]
            tracker.update(boxes, result.capture_ts, [s for _, s in found])
            for track in tracker.active(result.capture_ts):
                x0, y0, x1, y1 = track.box
                pixels = (x0 * width, y0 * height, x1 * width, y1 * height)
                objects.append(TrackedObject(self._site_id(label, track.track_id), label, track.score, pixels,
                                             foot_point(pixels, width, height)))
        return objects

    def _site_id(self, label: str, track_id: int) -> int:
        """One number per track across this camera's per-label trackers."""
        key = (label, track_id)
        if key not in self._ids:
            self._ids[key] = self._next_id
            self._next_id += 1
            if len(self._ids) > 10_000:  # bounded: forget the oldest numbering
                for old in list(self._ids)[:5_000]:
                    del self._ids[old]
        return self._ids[key]

    def _count_drop(self, label: str, score: float, box, width: int, height: int) -> None:
        rule = self.scene.filters.get(label)
        if rule is not None and not rule.keeps(score, box, width, height):
            self.drops.filtered += 1
        else:
            self.drops.masked += 1
