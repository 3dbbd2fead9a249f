"""The real-time rule: work on the newest frame of each camera, never on a backlog.

A batch read from the consumer group may hold several frames per camera; all but the
newest are acknowledged as skipped at once, and the newest is skipped too if it is
already older than the staleness limit. Counters say how much was skipped and why.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from shared.schemas import FrameRef
from shared.stream_bus import StreamEntry


@dataclass
class CameraCounters:
    analysed: int = 0
    skipped_backlog: int = 0
    skipped_stale: int = 0
    skipped_schedule: int = 0  # left to the tracker by motion-aware scheduling
    masked: int = 0  # detections dropped by the camera's masks or object filters (the site file)
    dropped: Counter[str] = field(default_factory=Counter)
    last_latency_ms: float = 0.0
    last_inference_ms: float = 0.0
    last_people: int = 0
    _analysed_ts: list[float] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.skipped_backlog + self.skipped_stale + self.skipped_schedule

    def record(self, latency_ms: float, inference_ms: float, people: int) -> None:
        now = time.monotonic()
        self.analysed += 1
        self.last_latency_ms, self.last_inference_ms, self.last_people = latency_ms, inference_ms, people
        self._analysed_ts.append(now)
        while self._analysed_ts and now - self._analysed_ts[0] > 3.0:
            self._analysed_ts.pop(0)

    @property
    def fps(self) -> float:
        stamps = self._analysed_ts
        if len(stamps) < 2:
            return 0.0
        return (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-6)

    def as_dict(self) -> dict[str, float]:
        return {
            "analysed": self.analysed,
            "detect_fps": round(self.fps, 2),
            "skipped": self.skipped,
            "skipped_stale": self.skipped_stale,
            "skipped_schedule": self.skipped_schedule,
            "masked": self.masked,
            "dropped": sum(self.dropped.values()),
            "latency_ms": round(self.last_latency_ms, 1),
            "inference_ms": round(self.last_inference_ms, 1),
            "people": self.last_people,
        }


@dataclass(frozen=True)
class Selection:
    newest: list[StreamEntry]  # at most one per camera, oldest capture first (fair round robin)
    skipped: list[StreamEntry]


def select_newest(entries: list[StreamEntry]) -> Selection:
    """Keep the newest frame per camera; everything else is backlog."""
    newest: dict[str, tuple[float, StreamEntry]] = {}
    skipped: list[StreamEntry] = []
    for entry in entries:
        ref = entry.message
        if not isinstance(ref, FrameRef):
            skipped.append(entry)
            continue
        current = newest.get(ref.camera_id)
        if current is None:
            newest[ref.camera_id] = (ref.capture_ts, entry)
        elif ref.capture_ts >= current[0]:
            skipped.append(current[1])
            newest[ref.camera_id] = (ref.capture_ts, entry)
        else:
            skipped.append(entry)
    ordered = [entry for _, entry in sorted(newest.values(), key=lambda pair: pair[0])]
    return Selection(ordered, skipped)


def is_stale(ref: FrameRef, max_age_ms: float, now: float | None = None) -> bool:
    return ((now or time.time()) - ref.capture_ts) * 1000.0 > max_age_ms
