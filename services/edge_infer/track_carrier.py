"""Carry detections onto frames the detector skipped, with the shared tracker (shared/tracker.py).

One IouTracker per camera and label follows the boxes of analysed frames; a skipped frame gets
each active track's box moved on at the track's velocity to the frame's capture time, marked as
tracked (Detection.tracked), so consumers see a box on every frame and know which were detected.
On an analysed frame, a confirmed track the detector missed is carried over the same way (coasting), for at
most MAX_COAST_MISSES analysed frames in a row (more for a track detected often). A box carried mostly out of the frame is not carried: that
object has left the view.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterator

from shared.schemas import Detection, DetectionSet, FrameRef
from shared.tracker import Box, IouTracker, Track

# A track not confirmed by a detection for this long is not carried any more (and the
# camera stops counting as one with tracks for the scheduler).
MAX_CARRY_S = 1.5
# A track must have been detected this often before it is carried over a frame where the detector
# missed it (one-off false detections are not carried).
MIN_HITS_TO_COAST = 2
# A track the detector missed on this many analysed frames in a row, or on half as many as it was detected in if
# that is more, is neither coasted nor carried until it is detected again (up to MAX_CARRY_S in any case): the
# longer a box is only predicted, the less often it lies on the object, and a track seen for long has earned a
# longer bridge (docs/benchmarks.md, "Carried boxes": the program's precision 0.44-0.47 -> 0.57-0.61 at the
# same recall on the road clip, and the same share of people boxed on the synthetic walkthrough).
MAX_COAST_MISSES = 5
# A carried box with less than this share of it inside the frame has left the view: it is not carried
# (carried on, a car that drove out would leave a sliver at the border for the rest of MAX_CARRY_S).
MIN_IN_VIEW = 0.5


class TrackCarrier:
    def __init__(self, max_carry_s: float = MAX_CARRY_S, min_in_view: float = MIN_IN_VIEW,
                 max_coast_misses: int = MAX_COAST_MISSES) -> None:
        self.max_carry_s = max_carry_s
        self.min_in_view = min_in_view
        self.max_coast_misses = max_coast_misses
        self._misses: dict[tuple[str, int], int] = {}
        """analysed frames in a row that missed each (camera, track id) coasted so far"""
        self._trackers: dict[str, dict[tuple[str, int], IouTracker]] = defaultdict(dict)
        self._ids: dict[str, Iterator[int]] = {}
        # Ids start from the clock, so a restarted edge does not hand out the ids of tracks the
        # sampler (or the compositor) still remembers as other objects.
        self._first_id = int(time.time()) * 1000

    def observe(self, result: DetectionSet) -> DetectionSet:
        """Follow the boxes of a frame the detector analysed; returns it with each box's track id
        (unique per camera across labels)."""
        by_label: dict[tuple[str, int], tuple[list[int], list[Box], list[float]]] = defaultdict(lambda: ([], [], []))
        for index, item in enumerate(result.detections):
            indices, boxes, scores = by_label[(item.label, item.class_id)]
            indices.append(index)
            boxes.append(normalise(item.box, result.width, result.height))
            scores.append(item.score)
        trackers = self._trackers[result.camera_id]
        ids = self._ids.setdefault(result.camera_id, itertools.count(self._first_id))
        track_ids: dict[int, int | None] = {}
        for key in sorted(set(by_label) | set(trackers)):  # a fixed order: track ids do not depend on hashing
            tracker = trackers.get(key)
            if tracker is None:
                tracker = trackers[key] = IouTracker(max_age_s=self.max_carry_s, ids=ids)
            indices, boxes, scores = by_label.get(key, ([], [], []))
            track_ids.update(zip(indices, tracker.update(boxes, result.capture_ts, scores), strict=True))
        detections = [item.model_copy(update={"track_id": track_ids.get(index)}) if item.track_id is None else item
                      for index, item in enumerate(result.detections)]
        for track_id in track_ids.values():
            if track_id is not None:
                self._misses.pop((result.camera_id, track_id), None)
        return result.model_copy(update={"detections": detections})

    def coasting(self, result: DetectionSet) -> list[Detection]:
        """Tracked boxes of tracks the detector missed on this analysed frame (call after observe)."""
        items = []
        active: set[tuple[str, int]] = set()
        for (label, class_id), tracker in self._trackers.get(result.camera_id, {}).items():
            for track, box in tracker.predict(result.capture_ts):
                if track.last_seen >= result.capture_ts:
                    continue
                key = (result.camera_id, track.track_id)
                active.add(key)
                self._misses[key] = misses = self._misses.get(key, 0) + 1
                if misses <= self._coast_limit(track) and track.hits >= MIN_HITS_TO_COAST \
                        and in_view(box) >= self.min_in_view:
                    items.append(Detection(label=label, class_id=class_id, score=round(track.score, 4),
                                           box=clip(box, result.width, result.height), tracked=True,
                                           track_id=track.track_id))
        self._misses = {key: count for key, count in self._misses.items() if key[0] != result.camera_id or key in active}
        return items

    def _coast_limit(self, track: Track) -> int:
        """Analysed frames in a row a track may be missed on and still be coasted."""
        return max(self.max_coast_misses, track.hits // 2)

    def has_tracks(self, camera_id: str, ts: float) -> bool:
        return any(tracker.active(ts) for tracker in self._trackers.get(camera_id, {}).values())

    def carried(self, camera_id: str, ts: float, width: int, height: int) -> list[Detection]:
        items = []
        for (label, class_id), tracker in self._trackers.get(camera_id, {}).items():
            for track, box in tracker.predict(ts):
                if in_view(box) < self.min_in_view \
                        or self._misses.get((camera_id, track.track_id), 0) > self._coast_limit(track):
                    continue
                items.append(Detection(label=label, class_id=class_id, score=round(track.score, 4),
                                       box=clip(box, width, height), tracked=True, track_id=track.track_id))
        return items

    def carried_set(self, ref: FrameRef, model: str, provider: str) -> DetectionSet:
        now = time.time()
        return DetectionSet(
            camera_id=ref.camera_id, seq=ref.seq, frame_id=ref.frame_id, capture_ts=ref.capture_ts,
            width=ref.width, height=ref.height, source="edge", model=model, provider=provider,
            latency_ms=max(0.0, (now - ref.capture_ts) * 1000.0), inference_ms=0.0,
            detections=self.carried(ref.camera_id, ref.capture_ts, ref.width, ref.height),
            published_ts=now, tracked=True,
        )


def normalise(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def in_view(box: Box) -> float:
    """Share of a normalised box inside the frame (0 for an empty box)."""
    x0, y0, x1, y1 = box
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    inside = max(0.0, min(x1, 1.0) - max(x0, 0.0)) * max(0.0, min(y1, 1.0) - max(y0, 0.0))
    return inside / area if area > 0 else 0.0


def clip(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (min(max(x0, 0.0), 1.0) * width, min(max(y0, 0.0), 1.0) * height,
            min(max(x1, 0.0), 1.0) * width, min(max(y1, 0.0), 1.0) * height)
