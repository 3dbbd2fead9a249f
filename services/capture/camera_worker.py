"""One camera's capture loop: read, stamp, put the pixels in shared memory, publish a reference."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from services.capture.sources import FrameSource, SourceError
from shared.backoff import Backoff
from shared.frame_ring import FrameRingWriter, encode_jpeg, ring_name
from shared.schemas import FrameRef, Health, HealthState
from shared.site_config import ResolvedCamera
from shared.stream_bus import StreamBus, frames_stream

log = logging.getLogger(__name__)

FRAME_STREAM_MAXLEN = 300  # references older than the ring are useless; keep a short window


@dataclass
class CameraStats:
    state: HealthState = "starting"
    message: str = ""
    frames: int = 0
    reconnects: int = 0
    read_errors: int = 0
    fps: float = 0.0
    last_capture_ts: float = 0.0
    _window: list[float] = field(default_factory=list)

    def frame_published(self, capture_ts: float) -> None:
        self.frames += 1
        self.last_capture_ts = capture_ts
        self._window.append(capture_ts)
        while self._window and capture_ts - self._window[0] > 2.0:
            self._window.pop(0)
        if len(self._window) > 1:
            self.fps = (len(self._window) - 1) / max(self._window[-1] - self._window[0], 1e-6)

    def as_counters(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "reconnects": self.reconnects,
            "read_errors": self.read_errors,
            "last_capture_ts": self.last_capture_ts,
        }


class CameraWorker(threading.Thread):
    def __init__(
        self,
        camera: ResolvedCamera,
        source: FrameSource,
        bus: StreamBus,
        stop: threading.Event,
        ring_slots: int = 8,
        inline_jpeg_quality: int | None = None,
        reconnect_max_s: float = 10.0,
    ) -> None:
        super().__init__(name=f"capture-{camera.id}", daemon=True)
        self.camera = camera
        self.source = source
        self.bus = bus
        self.stop_event = stop
        self.inline_jpeg_quality = inline_jpeg_quality
        self.reconnect_max_s = reconnect_max_s
        self.stats = CameraStats()
        self.ring = FrameRingWriter(ring_name(camera.id), camera.width, camera.height, ring_slots)
        self.stream = frames_stream(camera.id)
        self.seq = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self._connect():
                    break
                self._capture_until_lost()
        finally:
            self.source.close()
            self.stats.state = "stopped"
            self.ring.close()

    def health(self) -> Health:
        return Health(
            service="capture",
            instance=self.camera.id,
            camera_id=self.camera.id,
            state=self.stats.state,
            message=self.stats.message,
            counters=self.stats.as_counters(),
        )

    def _connect(self) -> bool:
        backoff = Backoff(0.5, max(0.5, self.reconnect_max_s))
        while not self.stop_event.is_set():
            try:
                self.source.open()
                if self.stats.state == "reconnecting":
                    log.info("camera %s is back (%s)", self.camera.id, self.source.description)
                self.stats.state, self.stats.message = "ok", ""
                return True
            except SourceError as error:
                self.stats.reconnects += 1
                if self.stats.state != "reconnecting":
                    log.warning("camera %s: %s; retrying with backoff", self.camera.id, error)
                self.stats.state, self.stats.message = "reconnecting", str(error)
                self.stop_event.wait(backoff.next_delay())
        return False

    def _capture_until_lost(self) -> None:
        interval = 1.0 / self.camera.fps
        next_due = time.monotonic()
        while not self.stop_event.is_set():
            if not self.source.paced_by_source:
                wait = next_due - time.monotonic()
                if wait > 0:
                    self.stop_event.wait(wait)
                next_due = max(next_due + interval, time.monotonic() - interval)
            slot, pixels = self.ring.begin()
            try:
                self.source.read_into(pixels, self.seq)
            except SourceError as error:
                self.stats.read_errors += 1
                self.stats.state, self.stats.message = "reconnecting", str(error)
                log.warning("camera %s lost: %s", self.camera.id, error)
                self.source.close()
                return
            capture_ts = time.time()
            self.ring.commit(slot, self.seq, capture_ts)
            self._publish(slot, capture_ts, pixels)
            self.seq += 1

    def _publish(self, slot: int, capture_ts: float, pixels) -> None:
        ref = FrameRef(
            camera_id=self.camera.id,
            seq=self.seq,
            capture_ts=capture_ts,
            width=self.camera.width,
            height=self.camera.height,
            shm_name=self.ring.name,
            slot=slot,
            jpeg=encode_jpeg(pixels, self.inline_jpeg_quality) if self.inline_jpeg_quality else None,
        )
        self.bus.publish(self.stream, ref, maxlen=FRAME_STREAM_MAXLEN)
        self.stats.frame_published(capture_ts)
