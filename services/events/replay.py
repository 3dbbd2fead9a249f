"""Run the events pipeline over a recorded file, as fast as it goes: for tests, figures and rule tuning.

Per-frame detections come from a file (a detector's cached output) and the clip packets from the
recording itself, interleaved by time exactly as the live service sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from services.events.event_recorder import EventRecorder
from services.events.notifications import Notifier
from services.events.packet_feed import DemuxedFeed
from shared.event_rules import EventsConfig
from shared.event_store import EventStore
from shared.schemas import Detection, DetectionSet
from shared.zones import CameraScene

FrameDetections = Sequence[Sequence]  # per frame: [label, score, x0, y0, x1, y1], pixels


@dataclass
class ReplayResult:
    recorder: EventRecorder
    events: list[dict]
    frames: int


def replay_file(video: Path, detections: Sequence[FrameDetections], config: EventsConfig, scene: CameraScene,
                store_dir: Path, origin_ts: float, fps: float, notifier: Notifier | None = None,
                snapshots: bool = True) -> ReplayResult:
    store = EventStore(store_dir)
    recorder = EventRecorder(store, config, {scene.camera_id: scene}, notifier=notifier, clock=lambda: origin_ts)
    feed = DemuxedFeed(str(video), paced=False, origin_ts=origin_ts)
    recorder.set_template(scene.camera_id, feed.open())
    packets = feed.packets()
    pending = next(packets, None)
    capture = cv2.VideoCapture(str(video))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = 0
    try:
        for index, found in enumerate(detections):
            ts = origin_ts + index / fps
            while pending is not None and pending.ts <= ts + 1e-6:
                recorder.on_packet(scene.camera_id, pending)
                pending = next(packets, None)
            frame = None
            if snapshots:
                ok, frame = capture.read()
                frame = frame if ok else None
            result = DetectionSet(camera_id=scene.camera_id, seq=index, frame_id=f"{scene.camera_id}-{index}",
                                  capture_ts=ts, width=width, height=height, model="replay", provider="file",
                                  latency_ms=0.0, detections=[Detection(label=str(d[0]), score=float(d[1]),
                                                                        box=(d[2], d[3], d[4], d[5])) for d in found])
            recorder.on_detections(result, frame)
            frames += 1
        while pending is not None:  # the rest of the file: post-roll
            recorder.on_packet(scene.camera_id, pending)
            pending = next(packets, None)
        recorder.flush(origin_ts + frames / fps)
    finally:
        capture.release()
        feed.close()
    events = sorted(store.events(), key=lambda e: e["start_ts"])
    return ReplayResult(recorder, events, frames)
