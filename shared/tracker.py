"""A small per-camera IoU/centroid tracker: who is in view, how big, how fast they move.

Used by the compositor (interest, framing) and by edge inference (boxes carried forward, by
constant velocity, on frames the detector skipped).

Boxes are normalised to the frame (0..1), so masters and slaves of any size compare.
Observations normally arrive in capture order; a late one (a cloud result) is matched
against each track's box at that capture time and only adds evidence: it never moves
the tracker's clock backwards.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]  # x0, y0, x1, y1, normalised


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_iou_pairs(first: Sequence[Box], second: Sequence[Box], min_iou: float) -> list[tuple[int, int]]:
    """(i, j) index pairs of boxes of two lists overlapping at least ``min_iou``: one to one, best overlap first."""
    pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)), reverse=True)
    matched: list[tuple[int, int]] = []
    first_used: set[int] = set()
    second_used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in first_used and j not in second_used:
            matched.append((i, j))
            first_used.add(i)
            second_used.add(j)
    return matched


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def centre_distance(a: Box, b: Box) -> float:
    (ax, ay), (bx, by) = centre(a), centre(b)
    return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5


@dataclass
class Track:
    track_id: int
    box: Box
    last_seen: float
    first_seen: float
    hits: int = 1
    speed: float = 0.0  # centre motion in frame widths per second, smoothed
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion (x, y) in frame sizes per second, smoothed
    score: float = 0.0  # detector score of the last observation
    history: deque = field(default_factory=lambda: deque(maxlen=32))  # (ts, box)

    def box_at(self, ts: float) -> Box:
        """The box observed closest to capture time ``ts``."""
        return min(self.history, key=lambda item: abs(item[0] - ts))[1] if self.history else self.box

    def predicted_box(self, ts: float) -> Box:
        """The last box moved on at the track's velocity to time ``ts`` (no extrapolation backwards)."""
        dt = max(0.0, ts - self.last_seen)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


class IouTracker:
    def __init__(self, max_age_s: float = 1.5, min_iou: float = 0.2, max_centre_jump: float = 0.15,
                 match_predicted: bool = True, ids: Iterator[int] | None = None) -> None:
        """``match_predicted``: match new boxes against where each track should be now (constant velocity),
        which carries fast movers across skipped frames; False matches against the last box seen.
        ``ids``: where track ids come from (share one between trackers whose ids must not collide)."""
        self.max_age_s = max_age_s
        self.match_predicted = match_predicted
        self.min_iou = min_iou
        self.max_centre_jump = max_centre_jump
        self.tracks: list[Track] = []
        self.last_ts = float("-inf")
        self._ids = ids if ids is not None else itertools.count(1)

    def update(self, boxes: list[Box], ts: float, scores: list[float] | None = None) -> list[int | None]:
        """Follow the boxes of one frame; returns each box's track id (None: late evidence that started nothing)."""
        if ts >= self.last_ts:
            return self._step(boxes, ts, scores)
        return self._add_late_evidence(boxes, ts)

    def predict(self, ts: float) -> list[tuple[Track, Box]]:
        """Where each active track's box should be at time ``ts``, for a frame no detector saw."""
        return [(track, track.predicted_box(ts)) for track in self.active(ts)]

    def active(self, now: float) -> list[Track]:
        """Tracks seen within max_age of ``now`` (and not only in the future of it)."""
        return [t for t in self.tracks if now - self.max_age_s <= t.last_seen <= now + self.max_age_s]

    def _step(self, boxes: list[Box], ts: float, scores: list[float] | None = None) -> list[int | None]:
        self.last_ts = ts
        ids: list[int | None] = []
        self.tracks = [t for t in self.tracks if ts - t.last_seen <= self.max_age_s]
        expected = (lambda t: t.predicted_box(ts)) if self.match_predicted else (lambda t: t.box)
        for index, (track, box) in enumerate(self._match(boxes, expected)):
            score = scores[index] if scores else 0.0
            if track is None:
                started = self._start(box, ts)
                started.score = score
                ids.append(started.track_id)
                continue
            ids.append(track.track_id)
            dt = ts - track.last_seen
            if dt > 0:
                instant = centre_distance(track.box, box) / dt
                track.speed = 0.7 * track.speed + 0.3 * instant
                (old_x, old_y), (new_x, new_y) = centre(track.box), centre(box)
                vx, vy = (new_x - old_x) / dt, (new_y - old_y) / dt
                track.velocity = (vx, vy) if track.hits == 1 else (
                    0.5 * track.velocity[0] + 0.5 * vx, 0.5 * track.velocity[1] + 0.5 * vy)
            track.box, track.last_seen, track.score = box, ts, score
            track.hits += 1
            track.history.append((ts, box))
        return ids

    def _add_late_evidence(self, boxes: list[Box], ts: float) -> list[int | None]:
        ids: list[int | None] = []
        for track, box in self._match(boxes, lambda t: t.box_at(ts)):
            if track is None:
                ids.append(self._start(box, ts).track_id if self.last_ts - ts <= self.max_age_s else None)
            else:
                track.hits += 1
                ids.append(track.track_id)
        return ids

    def _start(self, box: Box, ts: float) -> Track:
        track = Track(next(self._ids), box, last_seen=ts, first_seen=ts)
        track.history.append((ts, box))
        self.tracks.append(track)
        return track

    def _match(self, boxes: list[Box], box_of) -> list[tuple[Track | None, Box]]:
        """Greedy matching, best IoU first, then nearest centre for small fast boxes."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            reference = box_of(track)
            for bi, box in enumerate(boxes):
                overlap = iou(reference, box)
                if overlap >= self.min_iou:
                    pairs.append((1.0 + overlap, ti, bi))
                else:
                    distance = centre_distance(reference, box)
                    if distance <= self.max_centre_jump:
                        pairs.append((1.0 - distance / self.max_centre_jump, ti, bi))
        pairs.sort(reverse=True)
        used_tracks: set[int] = set()
        matched: dict[int, Track] = {}
        for _, ti, bi in pairs:
            if ti in used_tracks or bi in matched:
                continue
            used_tracks.add(ti)
            matched[bi] = self.tracks[ti]
        return [(matched.get(bi), box) for bi, box in enumerate(boxes)]
