"""Clip packets for a camera with no compressed stream of its own (the synthetic scene): its frames are encoded
once, as they are captured, into the same rolling buffer a real camera's packets go to (never per event).

Follows ``frames:<camera>`` (no consumer group: it only watches), takes each frame's pixels from the shared
ring, scales it to at most ``width`` wide and encodes H.264 (x264 ultrafast, a keyframe every second,
parameter sets in band), stamped with the frame's capture time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fractions import Fraction

import av
import cv2

from services.events.clip_buffer import EncodedStream, TimedPacket
from shared.frame_ring import FrameFetcher, FrameGone
from shared.schemas import FrameRef, SchemaError, decode_as
from shared.stream_bus import StreamBus, frames_stream

log = logging.getLogger(__name__)


class SyntheticEncoder:
    def __init__(self, camera_id: str, width: int, height: int, fps: float, max_width: int = 640) -> None:
        scale = min(1.0, max_width / width)
        self.camera_id = camera_id
        self.size = (max(16, int(width * scale) // 2 * 2), max(16, int(height * scale) // 2 * 2))
        rate = Fraction(fps).limit_denominator(1000)
        self.spec = EncodedStream("libx264", self.size[0], self.size[1], rate,
                                  {"preset": "ultrafast", "tune": "zerolatency", "g": str(max(1, round(fps))), "crf": "28"})
        self.encoder = self.spec.encoder()
        self.time_base = Fraction(1, 1000)  # milliseconds of capture time since the first frame
        self.first_ts: float | None = None
        self.last_pts = -1
        self.frames = 0

    def encode(self, pixels, capture_ts: float) -> list[TimedPacket]:
        if self.first_ts is None:
            self.first_ts = capture_ts
        pts = int((capture_ts - self.first_ts) * 1000)
        if pts <= self.last_pts:
            return []
        self.last_pts = pts
        small = cv2.resize(pixels, self.size, interpolation=cv2.INTER_AREA) if pixels.shape[1] != self.size[0] else pixels
        frame = av.VideoFrame.from_ndarray(small, format="bgr24").reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, self.time_base
        self.frames += 1
        return [TimedPacket(self.first_ts + packet.pts / 1000, bytes(packet), packet.pts, packet.dts, self.time_base,
                            bool(packet.is_keyframe))
                for packet in self.encoder.encode(frame)]


def run_synthetic_feed(bus: StreamBus, encoder: SyntheticEncoder, deliver: Callable[[TimedPacket], None],
                       stop: threading.Event) -> None:
    fetcher = FrameFetcher()
    stream = frames_stream(encoder.camera_id)
    last = "$"
    while not stop.is_set():
        entries = bus.follow({stream: last}, count=50, block_ms=500)
        for entry in entries[-5:]:  # behind by more than half a second: keep up, the clip skips
            try:
                ref = decode_as(entry.payload, FrameRef)
                pixels = fetcher.fetch(ref)
            except (SchemaError, FrameGone, ValueError, OSError):
                continue
            for item in encoder.encode(pixels, ref.capture_ts):
                deliver(item)
        if entries:
            last = entries[-1].entry_id
