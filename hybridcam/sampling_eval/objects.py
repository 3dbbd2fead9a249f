"""Object-level scoring: the reference's objects (tracks), which of them a policy's sent frames showed, how soon.

The reference detector's watch-label boxes (score >= the reference minimum) are linked from frame
to frame by IoU (the shared tracker, one per label), giving one track per object. Tracks shorter than
``min_track_s`` are ignored (flicker, a box that splits for a moment). An object is *seen* by the
cloud when a sent frame shows it: the reference detects that track in the frame at a usable size
(its box's shorter side at least ``min_px`` pixels). Its delay runs from its first frame to the
moment its first such frame was sent (a frame held for the rate window or the budget goes late).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hybridcam.sampling_eval.reference import FrameResults
from shared.tracker import IouTracker, greedy_iou_pairs

REFERENCE_MAX_GAP_S = 1.0
"""a reference track survives this long without a detection (the reference misses a frame now and then)"""


@dataclass
class ReferenceObject:
    object_id: int
    label: str
    first: int
    last: int
    """frame indices, inclusive"""
    usable: set[int] = field(default_factory=set)
    """frames in which the reference detects it at a usable size"""


@dataclass(frozen=True)
class ObjectScore:
    objects: int
    seen: int
    recall: float
    delay_median_s: float | None
    delay_p90_s: float | None
    frames_per_object: float


PixelBox = tuple[float, float, float, float]
TRUTH_MIN_IOU = 0.3
"""a reference box is a ground-truth person's when they overlap at least this much (best first, one to one)"""


def reference_objects(results: FrameResults, fps: float, watch_labels: frozenset[str], min_score: float,
                      min_track_s: float = 1.0, min_px: float = 12.0,
                      truth: Sequence[Sequence[tuple[int, PixelBox]]] | None = None) -> list[ReferenceObject]:
    """The distinct objects the reference sees for at least min_track_s, at a usable size at least once.

    ``truth`` (the synthetic scene's: who is where in each frame) names the objects instead of the IoU tracker:
    each reference box of a watch label is the ground-truth person it overlaps, so a person the reference loses
    for a moment stays one object, and one who leaves the view and comes back is a new one; a box that matches
    nobody is no object."""
    if truth is not None:
        return _objects_by_truth(results, fps, watch_labels, min_score, min_track_s, min_px, truth)
    width, height = float(results.footage["width"]), float(results.footage["height"])
    trackers: dict[str, IouTracker] = {}
    found: dict[tuple[str, int], ReferenceObject] = {}
    for index, frame in enumerate(results.reference):
        by_label: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label in trackers}
        for label, score, x0, y0, x1, y1 in frame:
            if label in watch_labels and score >= min_score:
                by_label.setdefault(label, []).append((x0, y0, x1, y1))
        for label, boxes in by_label.items():
            tracker = trackers.setdefault(label, IouTracker(max_age_s=REFERENCE_MAX_GAP_S))
            normalised = [(x0 / width, y0 / height, x1 / width, y1 / height) for x0, y0, x1, y1 in boxes]
            for box, track_id in zip(boxes, tracker.update(normalised, index / fps), strict=True):
                if track_id is None:
                    continue
                item = found.setdefault((label, track_id), ReferenceObject(len(found) + 1, label, index, index))
                item.last = index
                if min(box[2] - box[0], box[3] - box[1]) >= min_px:
                    item.usable.add(index)
    return [item for item in found.values()
            if (item.last - item.first + 1) / fps >= min_track_s and item.usable]


def _objects_by_truth(results: FrameResults, fps: float, watch_labels: frozenset[str], min_score: float,
                      min_track_s: float, min_px: float,
                      truth: Sequence[Sequence[tuple[int, PixelBox]]]) -> list[ReferenceObject]:
    visits = _visits(truth, fps)
    found: dict[tuple[int, int], ReferenceObject] = {}
    for index, frame in enumerate(results.reference[:len(truth)]):
        boxes = [(label, (x0, y0, x1, y1)) for label, score, x0, y0, x1, y1 in frame
                 if label in watch_labels and score >= min_score]
        people = [person_box for _, person_box in truth[index]]
        for b, p in greedy_iou_pairs([box for _, box in boxes], people, TRUTH_MIN_IOU):
            person_id, box = truth[index][p][0], boxes[b][1]
            key = (person_id, visits[index][person_id])
            item = found.setdefault(key, ReferenceObject(len(found) + 1, boxes[b][0], index, index))
            item.last = index
            if min(box[2] - box[0], box[3] - box[1]) >= min_px:
                item.usable.add(index)
    return [item for item in found.values() if (item.last - item.first + 1) / fps >= min_track_s and item.usable]


def _visits(truth: Sequence[Sequence[tuple[int, PixelBox]]], fps: float) -> list[dict[int, int]]:
    """Per frame, each person's visit number: a person out of view for more than REFERENCE_MAX_GAP_S who comes
    back is a new object, as a new arrival is for the edge and for the cloud."""
    last_seen: dict[int, int] = {}
    visit: dict[int, int] = {}
    numbered: list[dict[int, int]] = []
    for index, people in enumerate(truth):
        for person_id, _ in people:
            if person_id in last_seen and (index - last_seen[person_id]) / fps > REFERENCE_MAX_GAP_S:
                visit[person_id] += 1
            visit.setdefault(person_id, 0)
            last_seen[person_id] = index
        numbered.append({person_id: visit[person_id] for person_id, _ in people})
    return numbered


def score_objects(sent: Sequence[tuple[int, float]], objects: Sequence[ReferenceObject], fps: float) -> ObjectScore:
    """Objects shown by a sent frame ((frame index, time sent) each), their first-send delays, frames per object."""
    sent_at: dict[int, float] = {}
    for index, at in sent:
        sent_at[index] = min(at, sent_at.get(index, at))
    delays: list[float] = []
    for item in objects:
        times = [sent_at[index] for index in item.usable if index in sent_at]
        if times:
            delays.append(max(0.0, min(times) - item.first / fps))
    count = len(objects)
    return ObjectScore(
        objects=count, seen=len(delays), recall=len(delays) / count if count else 1.0,
        delay_median_s=statistics.median(delays) if delays else None,
        delay_p90_s=float(np.percentile(delays, 90)) if delays else None,
        frames_per_object=len(sent_at) / count if count else float(len(sent_at)),
    )
