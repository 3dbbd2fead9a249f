"""Pair master frames with the edge detector's result for the same frame id, waiting a bounded time.

The sampler reads the ``detections`` stream (plain XREAD from where it started, no group: the edge
results are a side input, nothing to acknowledge) and keeps a summary of each edge detection set of
a master camera by frame id until its frame is decided. Counted on the way:

- ``edge_results``: edge detection sets of master cameras received;
- ``edge_unmatched``: results that no frame claimed before they expired (a frame the sampler never
  saw, or one decided long before);
- ``edge_late``: results for a frame already decided without them (the bounded wait ran out);
- ``edge_missing``: frames decided without an edge result.

Results arrive out of order and before or after their frame: pairing is by frame id only.

The cloud's results for master frames come back on the same stream (source "cloud", written by
the results bridge); each is reduced to its watch-label objects (their count and normalised boxes) and
handed to the policy (``cloud_answers()``), so that it knows what the cloud has already seen (``cloud_answers`` counted).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Iterable

from services.sampler.policy import Box, EdgeSummary, edge_tracks
from shared.schemas import DetectionSet, SchemaError, decode
from shared.stream_bus import DETECTIONS_STREAM, StreamBus

DECIDED_MEMORY = 4096
CloudAnswer = tuple[str, float, int, list[Box]]
"""camera, capture time, watch-label objects the cloud found, their boxes normalised to the frame"""


class EdgePairing:
    def __init__(self, masters: Iterable[str], watch_labels: frozenset[str], unsure_band: tuple[float, float],
                 result_ttl_s: float = 10.0, capacity: int = 4096, track_min_size: float = 0.04) -> None:
        self.masters = frozenset(masters)
        self.track_min_size = track_min_size
        self.watch_labels = watch_labels
        self.unsure_band = unsure_band
        self.result_ttl_s = result_ttl_s
        self.capacity = capacity
        self.waiting: OrderedDict[str, tuple[float, EdgeSummary]] = OrderedDict()
        self.decided: OrderedDict[str, None] = OrderedDict()
        self.last_result: dict[str, float] = {}
        self.answers: list[CloudAnswer] = []
        self.counters: Counter[str] = Counter()
        # Start at "now" (an explicit id: XREAD with "$" and no BLOCK would never return anything).
        self.last_id = f"{int(time.time() * 1000)}-0"

    def read(self, bus: StreamBus, now: float | None = None, count: int = 500) -> None:
        """Take new detection sets from the stream (non-blocking); undecodable ones are counted."""
        for entry in bus.follow({DETECTIONS_STREAM: self.last_id}, count):
            self.last_id = entry.entry_id
            try:
                message = decode(entry.payload)
            except SchemaError:
                self.counters["edge_malformed"] += 1
                continue
            if isinstance(message, DetectionSet):
                self.add(message, now)

    def add(self, result: DetectionSet, now: float | None = None) -> None:
        if result.camera_id not in self.masters:
            return
        if result.source == "cloud":
            found = [d for d in result.detections if d.label.lower() in self.watch_labels and d.score > self.unsure_band[1]]
            width, height = max(result.width, 1), max(result.height, 1)
            boxes = [(d.box[0] / width, d.box[1] / height, d.box[2] / width, d.box[3] / height) for d in found]
            self.answers.append((result.camera_id, result.capture_ts, len(found), boxes))
            self.counters["cloud_answers"] += 1
            del self.answers[:-self.capacity]
            return
        if result.source != "edge":
            return
        now = time.monotonic() if now is None else now
        self.counters["edge_results"] += 1
        self.last_result[result.camera_id] = now
        if result.frame_id in self.decided:
            self.counters["edge_late"] += 1
            return
        width, height = result.width, result.height
        tracks = edge_tracks(((d.label, d.score, (d.box[0] / width, d.box[1] / height, d.box[2] / width, d.box[3] / height),
                               d.track_id) for d in result.detections), self.watch_labels, self.unsure_band,
                             self.track_min_size)
        summary = EdgeSummary.of(((d.label, d.score) for d in result.detections), self.watch_labels, self.unsure_band,
                                 tracks)
        self.waiting[result.frame_id] = (now, summary)
        self.waiting.move_to_end(result.frame_id)
        self.expire(now)

    def cloud_answers(self) -> list[CloudAnswer]:
        """(camera, capture time, watch-label objects found, their boxes) of the cloud results read since the last call."""
        answers, self.answers = self.answers, []
        return answers

    def has(self, frame_id: str) -> bool:
        return frame_id in self.waiting

    def take(self, frame_id: str) -> EdgeSummary | None:
        """The frame's edge summary (None when none came); the frame counts as decided from now on."""
        found = self.waiting.pop(frame_id, None)
        self.decided[frame_id] = None
        while len(self.decided) > DECIDED_MEMORY:
            self.decided.popitem(last=False)
        if found is None:
            self.counters["edge_missing"] += 1
            return None
        return found[1]

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self.waiting:
            frame_id, (arrived, _) = next(iter(self.waiting.items()))
            if now - arrived < self.result_ttl_s and len(self.waiting) <= self.capacity:
                break
            self.waiting.popitem(last=False)
            self.counters["edge_unmatched"] += 1

    def silent_cameras(self, now: float, silence_s: float, started: float) -> list[str]:
        """Masters without an edge result for silence_s (counting from start for those never heard)."""
        return sorted(camera for camera in self.masters
                      if now - self.last_result.get(camera, started) >= silence_s)
