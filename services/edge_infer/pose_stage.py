"""Poses and actions of tracked people, on the frames the motion-aware schedule analyses.

The pose stage never decides on its own to look at a frame: it runs after the detector, on frames
the schedule chose (a still camera is posed at its floor rate, a busy one as often as it is
analysed). Within such a frame it poses at most ``max_people`` tracked people, least recently posed
first, each at most ``rate_hz`` times a second, so its cost per round is bounded whatever the crowd.

Each pose updates the track's streaming action classifier (vision/actions.py). The latest pose and
the track's current actions travel on the track's detections, on analysed frames and on the frames
the schedule skipped (where the tracker carries the box), so every consumer sees them on every frame.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shared.schemas import Detection, DetectionSet, PersonKeypoints
from vision.actions import ActionClassifier
from vision.pose import MultiPoseModel, PersonPose, SinglePoseModel

log = logging.getLogger(__name__)

PERSON = "person"
MULTI_POSE_MIN_IOU = 0.3  # a multi-pose person belongs to the tracked box it overlaps most, at least this much


@dataclass
class PoseCounters:
    estimated: int = 0
    pose_ms: float = 0.0
    failed: int = 0  # frames whose poses failed (published without new poses)
    frame_gone: int = 0  # frames overwritten in their ring before the pose stage read them
    actions_started: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, float]:
        out = {"pose.estimated": float(self.estimated), "pose.failed": float(self.failed),
               "pose.frame_gone": float(self.frame_gone),
               "pose.ms_mean": round(self.pose_ms / self.estimated, 2) if self.estimated else 0.0}
        out.update({f"action.{name}": float(count) for name, count in self.actions_started.items()})
        return out


class PoseStage:
    def __init__(self, model: SinglePoseModel | MultiPoseModel, classifier: ActionClassifier | None = None,
                 rate_hz: float = 5.0, max_people: int = 4, min_height_px: float = 48.0) -> None:
        if rate_hz <= 0 or max_people < 1 or min_height_px < 0:
            raise ValueError("rate_hz must be above 0, max_people at least 1 and min_height_px not negative.")
        self.model = model
        self.classifier = classifier or ActionClassifier()
        self.interval_s = 1.0 / rate_hz
        self.max_people = max_people
        self.min_height_px = min_height_px
        self.counters = PoseCounters()
        self._posed_at: dict[tuple[str, int], float] = {}
        self._poses: dict[tuple[str, int], PersonKeypoints] = {}

    def annotate(self, pixels: np.ndarray, result: DetectionSet) -> DetectionSet:
        """An analysed frame: pose the people who are due, update their actions, attach both."""
        due = self._due(result)
        if due:
            poses = self._estimate(pixels, result, due)
            # Tracks the detector saw on this frame (a coasting box is a track it missed: maybe the one that just fell).
            present = {(result.camera_id, d.track_id) for d in result.detections
                       if d.track_id is not None and d.label == PERSON and not d.tracked}
            for index, pose in poses.items():
                self._observe(result, result.detections[index], pose, present)
        self._forget(result)
        return self.decorate(result)

    def decorate(self, result: DetectionSet) -> DetectionSet:
        """Each tracked person's latest pose and current actions on this frame's detections."""
        items = []
        changed = False
        for item in result.detections:
            key = (result.camera_id, item.track_id) if item.track_id is not None and item.label == PERSON else None
            pose = self._poses.get(key) if key else None
            actions = sorted(self.classifier.actions(key)) if key else []
            if pose is not None or actions:
                item = item.model_copy(update={"pose": pose, "actions": actions})
                changed = True
            items.append(item)
        return result.model_copy(update={"detections": items}) if changed else result

    def _due(self, result: DetectionSet) -> list[int]:
        """Indexes of the tracked people to pose on this frame: not posed for interval_s, least recently first."""
        candidates = []
        for index, item in enumerate(result.detections):
            if item.label != PERSON or item.track_id is None or item.tracked:
                continue
            if item.box[3] - item.box[1] < self.min_height_px:
                continue
            last = self._posed_at.get((result.camera_id, item.track_id), -math.inf)
            if result.capture_ts - last >= self.interval_s * 0.999:
                candidates.append((last, index))
        return [index for _, index in sorted(candidates)[: self.max_people]]

    def _estimate(self, pixels: np.ndarray, result: DetectionSet, due: list[int]) -> dict[int, PersonPose]:
        if isinstance(self.model, SinglePoseModel):
            poses = {}
            for index in due:
                poses[index] = self.model.estimate(pixels, result.detections[index].box)
                self.counters.estimated += 1
                self.counters.pose_ms += self.model.last_ms
            return poses
        found = self.model.estimate(pixels)
        self.counters.estimated += len(due)
        self.counters.pose_ms += self.model.last_ms
        return match_poses(found, {index: result.detections[index].box for index in due})

    def _observe(self, result: DetectionSet, item: Detection, pose: PersonPose, present: set[tuple[str, int]]) -> None:
        assert item.track_id is not None
        key = (result.camera_id, item.track_id)
        self._posed_at[key] = result.capture_ts
        keypoints = pose.keypoints
        self._poses[key] = PersonKeypoints(
            keypoints=[(float(x), float(y), float(min(max(s, 0.0), 1.0))) for x, y, s in keypoints],
            score=min(max(pose.score, 0.0), 1.0), ts=result.capture_ts)
        update = self.classifier.update(key, result.capture_ts, item.box, keypoints, (result.width, result.height), present)
        for name in sorted(update.started):
            self.counters.actions_started[name] += 1
            log.info("camera %s person %d: %s", result.camera_id, item.track_id, name.replace("_", " "))

    def _forget(self, result: DetectionSet) -> None:
        """Bounded state: tracks of this camera not posed for the classifier's forget time are dropped."""
        horizon = self.classifier.limits.forget_s
        gone = [key for key, ts in self._posed_at.items() if key[0] == result.camera_id and result.capture_ts - ts > horizon]
        for key in gone:
            self._posed_at.pop(key, None)
            self._poses.pop(key, None)
            self.classifier.tracks.pop(key, None)


def match_poses(found: list[PersonPose], boxes: dict[int, tuple[float, float, float, float]]) -> dict[int, PersonPose]:
    """Each tracked box's multi-pose person: greedy by overlap of the model's box with the tracked one."""
    pairs = sorted(((box_iou(pose.box, box), index, n) for n, pose in enumerate(found) if pose.box
                    for index, box in boxes.items()), reverse=True)
    taken: set[int] = set()
    matched: dict[int, PersonPose] = {}
    for overlap, index, n in pairs:
        if overlap < MULTI_POSE_MIN_IOU or index in matched or n in taken:
            continue
        matched[index] = found[n]
        taken.add(n)
    return matched


def box_iou(a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float]) -> float:
    if a is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
