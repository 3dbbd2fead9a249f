"""The edge's per-frame path without the bus: detector, tracker, pose stage, on recorded frames.

What edge_infer does to each analysed frame (detections, track ids, poses, actions), run on a clip
at its own frame rate, for tests, benchmarks and calibration of the action thresholds. No Redis,
no shared memory: the frames come from a list or a video file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from services.edge_infer.pose_stage import PoseStage
from services.edge_infer.track_carrier import TrackCarrier
from shared.schemas import Detection, DetectionSet
from vision.detectors.base import Detector


@dataclass
class ReplayTiming:
    frames: int = 0
    detector_ms: float = 0.0
    pose_ms: float = 0.0  # the pose stage: poses, matching and the action classifier
    people_posed: int = 0

    @property
    def detector_ms_per_frame(self) -> float:
        return self.detector_ms / max(self.frames, 1)


@dataclass
class Replay:
    results: list[DetectionSet] = field(default_factory=list)
    timing: ReplayTiming = field(default_factory=ReplayTiming)

    def action_times(self, action: str) -> list[float]:
        """Capture times (seconds from the clip's start) of the frames where someone does ``action``."""
        return [r.capture_ts for r in self.results if any(action in d.actions for d in r.detections)]

    def first(self, action: str) -> float | None:
        times = self.action_times(action)
        return times[0] if times else None


def video_frames(path: Path, every: int = 1, limit: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds from the start, BGR frame) of every ``every``-th frame of a video file (or GIF)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    index = 0
    try:
        while limit is None or index < limit:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index / fps, frame
            index += 1
    finally:
        capture.release()


DetectFn = Callable[[float, np.ndarray], list[Detection]]  # (seconds from the clip's start, frame)


def live_detections(detector: Detector, labels: tuple[str, ...] = ("person",)) -> DetectFn:
    """Each frame through the detector (only the wanted labels)."""
    def detect(_ts: float, frame: np.ndarray) -> list[Detection]:
        found = detector.detect(frame)
        return [Detection(label=name, class_id=int(cid), score=float(score), box=tuple(float(v) for v in box))  # type: ignore[arg-type]
                for name, cid, score, box in zip(found.labels(detector.labels), found.class_ids, found.scores, found.boxes)
                if name in labels]
    return detect


def recorded_detections(path: Path, labels: tuple[str, ...] = ("person",)) -> DetectFn:
    """The edge detector's results recorded beside a clip (``hybridcam sampling-eval``'s NAME.detections.json.gz:
    per frame, [label, score, x1, y1, x2, y2] items), so a replay need not run the detector again."""
    content = json.loads(gzip.decompress(path.read_bytes()))
    recorded, fps = content["edge"], float(content["footage"]["fps"])

    def detect(ts: float, _frame: np.ndarray) -> list[Detection]:
        index = round(ts * fps)
        items = recorded[index] if index < len(recorded) else []
        return [Detection(label=label, score=float(score), box=(float(x1), float(y1), float(x2), float(y2)))
                for label, score, x1, y1, x2, y2 in items if label in labels]
    return detect


def replay(frames: Iterable[tuple[float, np.ndarray]], detect: DetectFn, stage: PoseStage | None,
           camera_id: str = "clip", model: str = "replay") -> Replay:
    """Every frame through the detections, the tracker (track ids) and the pose stage, as edge_infer does."""
    carrier = TrackCarrier()
    out = Replay()
    for seq, (ts, frame) in enumerate(frames):
        started = perf_counter()
        items = detect(ts, frame)
        detected = perf_counter()
        result = DetectionSet(camera_id=camera_id, seq=seq, frame_id=f"{camera_id}-{seq}", capture_ts=ts,
                              width=frame.shape[1], height=frame.shape[0], model=model, provider="replay",
                              latency_ms=0.0, detections=items, published_ts=ts)
        result = carrier.observe(result)
        if coasting := carrier.coasting(result):  # confirmed tracks the detector missed, as edge_infer adds them
            result = result.model_copy(update={"detections": [*result.detections, *coasting]})
        if stage is not None:
            posed_before = stage.counters.estimated
            result = stage.annotate(frame, result)
            out.timing.people_posed += stage.counters.estimated - posed_before
        finished = perf_counter()
        out.timing.frames += 1
        out.timing.detector_ms += (detected - started) * 1000.0
        out.timing.pose_ms += (finished - detected) * 1000.0
        out.results.append(result)
    return out
