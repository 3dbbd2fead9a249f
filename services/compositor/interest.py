"""What a viewer wants to see: interest per subject, the action region, and how well a view frames it.

All geometry is in the wide master's normalised coordinates (0..1). A slave's own tracks are
mapped through its ``covers`` region, so a person the master sees too small still counts.

Interest of one subject = 1 (present) + motion (track speed) + arrival (a new track) +
cloud confirmation + watch label. The **action region** is the box around the subjects
near the one with the most interest in its neighbourhood (the densest, most active
cluster), smoothed over time so it glides rather than jumps. A view (the wide frame, a
slave's covered region, the virtual crop) scores by how much of the cluster's interest it
shows whole, how large the subjects are on screen, and how many people it cuts at its edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.compositor.frame_boxes import box_at
from services.compositor.fusion import DetectionFusion
from shared.site_config import ResolvedCamera
from shared.tracker import Box, iou

FULL_VIEW: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class InterestWeights:
    motion: float = 1.0  # added at full speed (``fast_speed`` frame widths per second)
    fast_speed: float = 0.15
    arrival: float = 0.8  # added to a track younger than ``arrival_s``
    arrival_s: float = 3.0
    cloud: float = 0.5  # the cloud confirmed this person recently
    watch: float = 1.5  # a watch label (``watch_labels``) next to the subject
    # What people do (edge action classifier): a fall is worth a cut, loitering hardly.
    actions: tuple[tuple[str, float], ...] = (("fall", 3.0), ("lying", 1.5), ("hands_raised", 1.0), ("running", 0.6),
                                              ("loitering", 0.3))
    cluster_radius: float = 0.2  # neighbourhood of the cluster, in master widths
    smoothing_s: float = 0.8  # time constant of the action region
    evidence_s: float = 2.0  # how far back cloud/watch evidence counts


DEFAULT_WEIGHTS = InterestWeights()


@dataclass(frozen=True)
class Subject:
    box: Box
    interest: float
    speed: float


@dataclass(frozen=True)
class ActionRegion:
    box: Box
    subjects: tuple[Subject, ...]  # the cluster
    everyone: tuple[Subject, ...]

    @property
    def interest(self) -> float:
        return sum(s.interest for s in self.subjects)


@dataclass(frozen=True)
class Framing:
    coverage: float  # share of the cluster's interest shown whole
    size: float  # median subject height / view height
    cut_people: int  # people the view's edge cuts through
    score: float


def map_to_master(box: Box, region: tuple[float, float, float, float]) -> Box:
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    return (x0 + box[0] * w, y0 + box[1] * h, x0 + box[2] * w, y0 + box[3] * h)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def subjects_of(master: ResolvedCamera, cameras: list[ResolvedCamera], fusion: DetectionFusion, now: float,
                weights: InterestWeights, watch_labels: frozenset[str] = frozenset()) -> list[Subject]:
    """Everyone the site sees now, in the master's coordinates, with their interest."""
    subjects: list[Subject] = []
    boxes: list[Box] = []
    cloud_boxes = fusion.recent_boxes(master.id, now, weights.evidence_s, source="cloud")
    watch_boxes = fusion.recent_boxes(master.id, now, weights.evidence_s, labels=watch_labels) if watch_labels else []
    action_boxes = fusion.recent_actions(master.id, now, weights.evidence_s)
    for track in fusion.tracks(master.id, now):
        box = box_at(track, now) or track.box  # where the person is in the picture of ``now``, not in a newer one
        boxes.append(box)
        subjects.append(_subject(box, track.speed, now - track.first_seen, cloud_boxes, watch_boxes, weights, action_boxes))
    for camera in cameras:
        if camera.covers is None or camera.covers.master != master.id:
            continue
        r = camera.covers.region
        region = (r.x0, r.y0, r.x1, r.y1)
        scale = r.x1 - r.x0
        slave_actions = [(map_to_master(box, region), names) for box, names in fusion.recent_actions(camera.id, now, weights.evidence_s)]
        for track in fusion.tracks(camera.id, now):
            box = map_to_master(box_at(track, now) or track.box, region)
            if any(iou(box, seen) >= 0.3 for seen in boxes):
                continue  # the master (or another slave) already has this person
            boxes.append(box)
            subjects.append(_subject(box, track.speed * scale, now - track.first_seen, cloud_boxes, watch_boxes, weights,
                                     slave_actions))
    return subjects


def _subject(box: Box, speed: float, age: float, cloud: list[Box], watch: list[Box], weights: InterestWeights,
             actions: Sequence[tuple[Box, frozenset[str]]] = ()) -> Subject:
    interest = 1.0 + weights.motion * min(1.0, speed / weights.fast_speed)
    doing = frozenset().union(*(names for other, names in actions if iou(box, other) >= 0.3))
    interest += max((weight for name, weight in weights.actions if name in doing), default=0.0)
    if age < weights.arrival_s:
        interest += weights.arrival
    if any(iou(box, other) >= 0.3 for other in cloud):
        interest += weights.cloud
    if any(_near(box, other) for other in watch):
        interest += weights.watch
    return Subject(box, interest, speed)


def _near(a: Box, b: Box) -> bool:
    grow = (a[3] - a[1]) * 0.5
    return b[0] < a[2] + grow and b[2] > a[0] - grow and b[1] < a[3] + grow and b[3] > a[1] - grow


def densest_cluster(subjects: list[Subject], radius: float, aspect: float, previous: Box | None = None,
                    switch_ratio: float = 1.5) -> list[Subject]:
    """Subjects within ``radius`` (master widths) of the one with the most interest around it.

    With a ``previous`` region, the cluster around the subject nearest to it is kept unless
    another holds ``switch_ratio`` times its interest: in a crowd, two similar groups do not
    make the action region flip between them.
    """
    if not subjects:
        return []

    def distance(a: Box, b: Box) -> float:
        (ax, ay), (bx, by) = _centre(a), _centre(b)
        return math.hypot(ax - bx, (ay - by) / aspect)

    def around(s: Subject) -> float:
        return sum(o.interest for o in subjects if distance(s.box, o.box) <= radius)

    best = max(subjects, key=lambda s: (around(s), s.interest))
    if previous is not None:
        incumbent = min(subjects, key=lambda s: distance(s.box, previous))
        if distance(incumbent.box, previous) <= radius and around(best) < switch_ratio * around(incumbent):
            best = incumbent
    return [o for o in subjects if distance(best.box, o.box) <= radius]


def bounding_box(subjects: list[Subject] | tuple[Subject, ...]) -> Box:
    return (min(s.box[0] for s in subjects), min(s.box[1] for s in subjects),
            max(s.box[2] for s in subjects), max(s.box[3] for s in subjects))


class ActionTracker:
    """The action region over time: the densest cluster's box, smoothed exponentially."""

    def __init__(self, weights: InterestWeights, master_aspect: float) -> None:
        self.weights = weights
        self.aspect = master_aspect  # width / height of the master picture
        self.region: ActionRegion | None = None
        self._smoothed: tuple[float, float, float, float] | None = None
        self._last: float | None = None

    def update(self, now: float, subjects: list[Subject]) -> ActionRegion | None:
        cluster = densest_cluster(subjects, self.weights.cluster_radius, self.aspect, self._smoothed)
        if not cluster:
            self.region, self._smoothed, self._last = None, None, now
            return None
        raw = bounding_box(cluster)
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        previous = self._smoothed
        if previous is None:
            smoothed = raw
        else:
            alpha = 1.0 - math.exp(-dt / self.weights.smoothing_s) if self.weights.smoothing_s > 0 else 1.0
            x0, y0, x1, y1 = (p + alpha * (r - p) for p, r in zip(previous, raw))
            smoothed = (x0, y0, x1, y1)
        self._smoothed = smoothed
        self.region = ActionRegion(smoothed, tuple(cluster), tuple(subjects))
        return self.region


def inside_share(box: Box, view: Box) -> float:
    ix = max(0.0, min(box[2], view[2]) - max(box[0], view[0]))
    iy = max(0.0, min(box[3], view[3]) - max(box[1], view[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


def frame_score(view: Box, action: ActionRegion) -> Framing:
    """How well a view (master coordinates) frames the action region."""
    total = action.interest
    shown = [s for s in action.subjects if inside_share(s.box, view) >= 0.9]
    coverage = sum(s.interest for s in shown) / total if total > 0 else 0.0
    view_h = view[3] - view[1]
    heights = sorted((s.box[3] - s.box[1]) / view_h for s in (shown or action.subjects))
    size = heights[len(heights) // 2] if heights else 0.0
    cut = sum(1 for s in action.everyone if 0.15 <= inside_share(s.box, view) < 0.9)
    size_term = min(1.0, size / 0.45) if size <= 0.85 else max(0.0, 1.0 - (size - 0.85) * 3)
    score = coverage * (0.5 + 0.5 * size_term) - 0.12 * min(cut, 3)
    return Framing(coverage, size, cut, max(0.0, score))


def region_on_screen(view: Box, region: Box, share: float = 0.8) -> bool:
    """Whether the picture of ``view`` contains (most of) the action region."""
    return inside_share(region, view) >= share
