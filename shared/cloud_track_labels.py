"""What the cloud said about each object the edge tracks, kept for as long as the edge tracks it.

The cloud's results come back on the detections stream (source "cloud") seconds after their frame;
each detection over an object the edge tracked in that frame carries the object's track id (the
Lambda pairs them, ``CloudFrame.track_of``). The edge keeps a track's id from frame to frame, so the
cloud's label, once returned, names that object's box on every later frame, including the many the
cloud never saw. Track ids are unique per camera and never reused; the newest ``per_camera`` labelled
tracks are kept.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict

from shared.schemas import DetectionSet


class CloudTrackLabels:
    def __init__(self, per_camera: int = 256) -> None:
        self.per_camera = per_camera
        self.labels: dict[str, OrderedDict[int, dict[str, float]]] = defaultdict(OrderedDict)

    def learn(self, result: DetectionSet) -> None:
        """Take the labels of a cloud result's detections that name a track (other sets are ignored)."""
        if result.source != "cloud":
            return
        known = self.labels[result.camera_id]
        for detection in result.detections:
            if detection.track_id is None:
                continue
            labels = known.setdefault(detection.track_id, {})
            labels[detection.label] = max(labels.get(detection.label, 0.0), detection.score)
            known.move_to_end(detection.track_id)
        while len(known) > self.per_camera:
            known.popitem(last=False)

    def text(self, camera_id: str, track_id: int | None) -> str | None:
        """The cloud's labels for a track, best first ("Person, Hard Hat"); None when it said nothing about it."""
        known = self.labels.get(camera_id)
        labels = known.get(track_id) if known is not None and track_id is not None else None
        if not labels:
            return None
        return ", ".join(sorted(labels, key=lambda name: -labels[name]))

    def for_camera(self, camera_id: str) -> dict[int, str]:
        return {track_id: text for track_id in self.labels.get(camera_id, {})
                if (text := self.text(camera_id, track_id)) is not None}
