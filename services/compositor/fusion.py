"""Fuses edge and cloud detection sets into one short per-camera state.

Both sources publish on the same stream; a set is aligned to its frame by camera and
capture time. The edge usually arrives first; a cloud set for the same frame is merged
into that frame's observation (duplicates removed by IoU), and a cloud set that arrives
after newer frames were tracked only adds evidence to the past it belongs to. Queries
are made "as of" a program time, so nothing that arrives late can change a decision
that was already taken.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import Counter
from dataclasses import dataclass, field

from shared.schemas import Detection, DetectionSet
from shared.tracker import Box, IouTracker, Track, iou


@dataclass
class Observation:
    """Everything known about one captured frame of one camera."""

    capture_ts: float
    frame_id: str
    width: int
    height: int
    sources: set[str]
    detections: list[Detection]
    carried: bool = False  # only edge_infer's tracker boxes on a frame its detector skipped (DetectionSet.tracked)

    def __lt__(self, other: Observation) -> bool:
        return self.capture_ts < other.capture_ts


@dataclass(frozen=True)
class Sighting:
    """One detector box of an edge track, normalised to the frame."""

    capture_ts: float
    box: Box
    label: str


@dataclass
class SightingsAround:
    """Each edge track's last detector box at or before a moment and its first after it (within a window)."""

    before: dict[int, Sighting] = field(default_factory=dict)
    after: dict[int, Sighting] = field(default_factory=dict)
    detected_later: bool = False  # a detector result for a later frame has arrived: the tracks missing from it are gone


@dataclass(frozen=True)
class CameraActivity:
    """What the director needs to know about one camera at one moment."""

    people: tuple[Box, ...] = ()
    speed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.people)

    @property
    def mean_height(self) -> float:
        return sum(b[3] - b[1] for b in self.people) / len(self.people) if self.people else 0.0


@dataclass
class _CameraState:
    tracker: IouTracker
    observations: list[Observation] = field(default_factory=list)
    # compositor track id -> (label, edge track id) of the detection that last updated it
    identities: dict[int, tuple[str, int | None]] = field(default_factory=dict)


def _normalised(detection: Detection, width: int, height: int) -> Box:
    x0, y0, x1, y1 = detection.box
    return (
        min(max(x0 / width, 0.0), 1.0),
        min(max(y0 / height, 0.0), 1.0),
        min(max(x1 / width, 0.0), 1.0),
        min(max(y1 / height, 0.0), 1.0),
    )


def merge_detections(kept: list[Detection], incoming: list[Detection], same_iou: float = 0.5) -> list[Detection]:
    """Union of two detectors' findings; one box per object (the higher score wins)."""
    merged = list(kept)
    for new in incoming:
        duplicate = next(
            (i for i, old in enumerate(merged) if old.label == new.label and iou(old.box, new.box) >= same_iou), None
        )
        if duplicate is None:
            merged.append(new)
        elif new.score > merged[duplicate].score:
            merged[duplicate] = new
    return merged


class DetectionFusion:
    def __init__(
        self,
        labels: frozenset[str] = frozenset({"person"}),
        min_score: float = 0.3,
        track_max_age_s: float = 1.5,
        align_tolerance_s: float = 0.02,
        history_s: float = 10.0,
    ) -> None:
        self.labels = labels
        self.min_score = min_score
        self.track_max_age_s = track_max_age_s
        self.align_tolerance_s = align_tolerance_s
        self.history_s = history_s
        self.cameras: dict[str, _CameraState] = {}
        self.counters: Counter[str] = Counter()
        self.last_arrival: float | None = None

    def add(self, detection_set: DetectionSet, arrived_at: float) -> str:
        """Fold one detection set in; returns 'new', 'merged' (same frame) or 'late'."""
        self.last_arrival = arrived_at if self.last_arrival is None else max(self.last_arrival, arrived_at)
        state = self.cameras.get(detection_set.camera_id)
        if state is None:
            state = self.cameras[detection_set.camera_id] = _CameraState(
                # the director reads who was seen where; carrying boxes forward is edge_infer's job
                IouTracker(self.track_max_age_s, match_predicted=False))
        wanted = [d for d in detection_set.detections if d.score >= self.min_score]
        existing = self._aligned(state, detection_set.capture_ts, detection_set.frame_id)
        if existing is not None:
            existing.detections = merge_detections(existing.detections, wanted)
            existing.sources.add(detection_set.source)
            existing.carried = existing.carried and detection_set.tracked
            outcome = "merged"
        else:
            existing = Observation(
                detection_set.capture_ts, detection_set.frame_id, detection_set.width, detection_set.height,
                {detection_set.source}, wanted, carried=detection_set.tracked,
            )
            insort(state.observations, existing)
            outcome = "late" if detection_set.capture_ts < state.tracker.last_ts else "new"
        if not detection_set.tracked:
            self._follow(state, existing)
        self._forget_old(state)
        self.counters[f"{detection_set.source}_{outcome}"] += 1
        return outcome

    def activity(self, camera_id: str, now: float) -> CameraActivity:
        state = self.cameras.get(camera_id)
        if state is None:
            return CameraActivity()
        tracks = [t for t in state.tracker.active(now) if t.first_seen <= now]
        if not tracks:
            return CameraActivity()
        return CameraActivity(tuple(t.box for t in tracks), max(t.speed for t in tracks))

    def tracks(self, camera_id: str, now: float) -> list[Track]:
        """The camera's live tracks as of ``now`` (normalised boxes, speed, first seen)."""
        state = self.cameras.get(camera_id)
        if state is None:
            return []
        return [t for t in state.tracker.active(now) if t.first_seen <= now]

    def recent_boxes(self, camera_id: str, now: float, within_s: float, source: str | None = None,
                     labels: frozenset[str] | None = None) -> list[Box]:
        """Normalised boxes of observations captured in (now - within_s, now], filtered by source and/or label."""
        state = self.cameras.get(camera_id)
        boxes: list[Box] = []
        if state is None:
            return boxes
        for observation in reversed(state.observations):
            if observation.capture_ts > now:
                continue
            if observation.capture_ts < now - within_s:
                break
            if source is not None and source not in observation.sources:
                continue
            boxes.extend(_normalised(d, observation.width, observation.height) for d in observation.detections
                         if (labels is None and d.label in self.labels) or (labels is not None and d.label in labels))
        return boxes

    def recent_actions(self, camera_id: str, now: float, within_s: float) -> list[tuple[Box, frozenset[str]]]:
        """Normalised boxes of people doing something (edge action classifier) in (now - within_s, now], with their actions."""
        state = self.cameras.get(camera_id)
        found: list[tuple[Box, frozenset[str]]] = []
        for observation in reversed(state.observations if state else []):
            if observation.capture_ts > now:
                continue
            if observation.capture_ts < now - within_s:
                break
            found.extend((_normalised(d, observation.width, observation.height), frozenset(d.actions))
                         for d in observation.detections if d.actions)
        return found

    def detections_for_frame(self, camera_id: str, capture_ts: float, max_gap_s: float = 0.5) -> Observation | None:
        """The observation to draw over a frame: the same frame, else the latest before it."""
        state = self.cameras.get(camera_id)
        if state is None:
            return None
        best = None
        for observation in reversed(state.observations):
            if observation.capture_ts <= capture_ts + self.align_tolerance_s:
                best = observation
                break
        if best is None or capture_ts - best.capture_ts > max_gap_s:
            return None
        return best

    def observation_of(self, camera_id: str, capture_ts: float, frame_id: str = "") -> Observation | None:
        """The observation of exactly this frame (by frame id where known), or None."""
        state = self.cameras.get(camera_id)
        return None if state is None else self._aligned(state, capture_ts, frame_id)

    def _aligned(self, state: _CameraState, capture_ts: float, frame_id: str) -> Observation | None:
        """The observation of the same frame: by frame id where both have one (at 50-60 fps the next frame lies within
        the time tolerance, and must not be merged into this one), else by capture time."""
        for observation in reversed(state.observations):
            if frame_id and observation.frame_id:
                if observation.frame_id == frame_id:
                    return observation
            elif abs(observation.capture_ts - capture_ts) <= self.align_tolerance_s:
                return observation
            if observation.capture_ts < capture_ts - self.align_tolerance_s:
                return None
        return None

    def _follow(self, state: _CameraState, observation: Observation) -> None:
        """Update the camera's tracks from the boxes a detector found on this frame. Boxes edge_infer carried (its
        tracker's guesses) are left out: between detections the compositor interpolates from real observations on
        both sides of a frame, which it can because the program runs behind capture."""
        found = [d for d in observation.detections if d.label in self.labels and not d.tracked]
        ids = state.tracker.update([_normalised(d, observation.width, observation.height) for d in found], observation.capture_ts)
        for detection, track_id in zip(found, ids, strict=True):
            if track_id is not None:
                state.identities[track_id] = (detection.label, detection.track_id)

    def sightings_around(self, camera_id: str, ts: float, within_s: float) -> SightingsAround:
        """Detector boxes (not carried ones) of the camera's edge tracks nearest before and after capture time ``ts``."""
        around = SightingsAround()
        state = self.cameras.get(camera_id)
        if state is None:
            return around
        observations = state.observations
        split = bisect_right(observations, ts + 1e-6, key=lambda o: o.capture_ts)
        for index in range(split - 1, -1, -1):
            if observations[index].capture_ts < ts - within_s:
                break
            self._note_sightings(observations[index], around.before)
        for index in range(split, len(observations)):
            if observations[index].capture_ts > ts + within_s:
                break
            around.detected_later |= self._note_sightings(observations[index], around.after)
        return around

    def _note_sightings(self, observation: Observation, into: dict[int, Sighting]) -> bool:
        """Add the observation's detector boxes of tracks not in ``into`` yet; False for a carried observation."""
        if observation.carried:
            return False
        for detection in observation.detections:
            if detection.track_id is not None and not detection.tracked and detection.label in self.labels:
                into.setdefault(detection.track_id, Sighting(observation.capture_ts, _normalised(detection, observation.width,
                                                                                                   observation.height), detection.label))
        return True

    def identity(self, camera_id: str, track_id: int) -> tuple[str, int | None]:
        """Label and edge track id of one of the camera's tracks (for a box drawn between detections)."""
        state = self.cameras.get(camera_id)
        return state.identities.get(track_id, ("person", None)) if state else ("person", None)

    def _forget_old(self, state: _CameraState) -> None:
        if len(state.identities) > 4 * max(len(state.tracker.tracks), 16):
            live = {t.track_id for t in state.tracker.tracks}
            state.identities = {k: v for k, v in state.identities.items() if k in live}
        if not state.observations:
            return
        horizon = state.observations[-1].capture_ts - self.history_s
        drop = 0
        while drop < len(state.observations) and state.observations[drop].capture_ts < horizon:
            drop += 1
        if drop:
            del state.observations[:drop]
