"""Which sampled frames are worth a face search: the edge saw a person tall enough to hold a searchable face.

Rekognition's documented minimum face is 40x40 px in a 1920x1080 frame; scaled to the frame's height
that is ``min_face_px * height / 1080``. A standing person is about seven face-heights tall, so a person
box at least ``PERSON_TO_FACE`` times that minimum can hold such a face (a box cut off by the frame
edge is taller than it looks, never shorter). The edge detections come from the detections stream:
the newest edge set of the same camera captured within ``max_age_s`` of the sampled frame (the scan
stops at entries published before that window, so its cost stays small on a busy stream).
"""

from __future__ import annotations

import logging

import redis

from shared.schemas import DetectionSet, FrameRef, SchemaError, decode
from shared.stream_bus import DETECTIONS_STREAM, StreamBus

log = logging.getLogger("sampler.faces")

PERSON_TO_FACE = 7.0
REFERENCE_HEIGHT = 1080


class FaceCandidates:
    def __init__(self, bus: StreamBus | None, min_face_px: float = 40.0, max_age_s: float = 2.0, lookback: int = 512) -> None:
        self.bus = bus
        self.min_face_px = min_face_px
        self.max_age_s = max_age_s
        self.lookback = lookback

    def min_person_height(self, frame_height: int) -> float:
        return PERSON_TO_FACE * self.min_face_px * frame_height / REFERENCE_HEIGHT

    def holds_face(self, detections: DetectionSet) -> bool:
        tallest = self.min_person_height(detections.height)
        return any(d.label == "person" and d.box[3] - d.box[1] >= tallest for d in detections.detections)

    def marks(self, ref: FrameRef) -> bool:
        """True when the newest edge detections of this camera near the frame's capture time show such a person."""
        if self.bus is None:
            return False
        try:
            newest = self.bus.newest(DETECTIONS_STREAM, self.lookback)
        except redis.RedisError as error:  # unmarked is the safe side: the frame still goes, only unsearched
            log.warning("edge detections unreadable (%s); frame %s not marked for face search", error, ref.frame_id)
            return False
        oldest_useful_ms = (ref.capture_ts - self.max_age_s) * 1000  # entry ids are publish times, never before capture
        for entry in newest:
            if int(entry.entry_id.split("-")[0]) < oldest_useful_ms:
                break
            try:
                message = decode(entry.payload)
            except SchemaError:
                continue
            if (isinstance(message, DetectionSet) and message.source == "edge" and message.camera_id == ref.camera_id
                    and abs(message.capture_ts - ref.capture_ts) <= self.max_age_s):
                return self.holds_face(message)
        return False
