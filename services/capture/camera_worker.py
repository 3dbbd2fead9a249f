"""One camera's capture loop: read, stamp, put the pixels in shared memory, publish a reference."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from services.capture.sources import FrameSource, SourceError
from shared.backoff import Backoff
from shared.frame_ring import FrameRingWriter, encode_jpeg, ring_name
from shared.schemas import FrameRef, Health, HealthState
from shared.site_config import ResolvedCamera
from shared.stream_bus import StreamBus, frames_stream

log = logging.getLogger(__name__)

FRAME_STREAM_MAXLEN = 300  # references older than the ring are useless; keep a short window
FPS_WINDOW_S = 2.0
STABLE_CONNECTION_S = 5.0  # a connection that lasted this long was not a flap


@dataclass
class CameraStats:
    state: HealthState = "starting"
    message: str = ""
    frames: int = 0
    reconnects: int = 0
    read_errors: int = 0
    restarts: int = 0  # the loop failed unexpectedly and was restarted by its supervisor
    last_capture_ts: float = 0.0
    _window: deque[float] = field(default_factory=lambda: deque(maxlen=512))  # bounded: 2 s at up to 256 fps

    def frame_published(self, capture_ts: float) -> None:
        self.frames += 1
        self.last_capture_ts = capture_ts
        self._window.append(capture_ts)

    def fps_at(self, now: float) -> float:
        """Frames per second over the last two seconds up to ``now``: a source that stopped delivering reads 0,
        not the rate it had when it last published."""
        recent = [ts for ts in tuple(self._window) if now - ts <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(now - recent[0], recent[-1] - recent[0], 1e-6)

    @property
    def fps(self) -> float:
        return self.fps_at(time.time())

    def progress_state(self, now: float, stall_after_s: float, fail_after_s: float = 60.0) -> tuple[HealthState, str]:
        """The state health reports: a camera that is "ok" but has not delivered for ``stall_after_s`` is
        degraded; for ``fail_after_s`` (reads time out long before: the loop itself is stuck) it has failed."""
        if self.state == "ok" and self.last_capture_ts and now - self.last_capture_ts > stall_after_s:
            silent = now - self.last_capture_ts
            return ("failed" if silent > fail_after_s else "degraded"), f"no frame for {silent:.1f} s"
        return self.state, self.message

    def as_counters(self, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        return {
            "frames": self.frames,
            "fps": round(self.fps_at(now), 2),
            "reconnects": self.reconnects,
            "read_errors": self.read_errors,
            "restarts": self.restarts,
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
        ring_namespace: str = "hybridcam",
        site_bus: StreamBus | None = None,
    ) -> None:
        """``bus`` gets every frame reference; with a node-local frame bus, ``site_bus`` (the site Redis)
        gets them too, carrying the inline JPEG that the readers on other servers decode."""
        super().__init__(name=f"capture-{camera.id}", daemon=True)
        self.camera = camera
        self.source = source
        self.bus = bus
        self.site_bus = site_bus
        self.stop_event = stop
        self.inline_jpeg_quality = inline_jpeg_quality
        self.reconnect_max_s = reconnect_max_s
        self.stats = CameraStats()
        self.ring = FrameRingWriter(ring_name(camera.id, ring_namespace), camera.width, camera.height, ring_slots)
        self.stream = frames_stream(camera.id)
        self.seq = 0
        self._connected_at = 0.0
        self._flap_delay = 0.0

    def run(self) -> None:
        try:
            self._supervise()
        finally:
            self.source.close()
            self.stats.state = "stopped"
            self.ring.close()

    def _supervise(self) -> None:
        """Run the capture loop; an unexpected failure restarts it after a backoff instead of
        ending the thread (which would leave the camera dead while the process looks alive)."""
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                while not self.stop_event.is_set():
                    if not self._connect():
                        return
                    self._capture_until_lost()
                    self._back_off_if_flapping()
                    delay = 0.5
            except Exception as error:  # noqa: BLE001 (supervision: anything the loop did not expect)
                self.stats.restarts += 1
                self.stats.state, self.stats.message = "degraded", f"capture loop restarted after {type(error).__name__}: {error}"[:200]
                log.exception("camera %s: capture loop failed; restarting in %.1f s", self.camera.id, delay)
                self.source.close()
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    def _back_off_if_flapping(self) -> None:
        """A source that opens but fails its first reads (a camera that accepts and hangs up, a corrupt
        stream) would be reopened at once, forever: wait longer after each short-lived connection."""
        lasted = time.monotonic() - self._connected_at
        if lasted >= STABLE_CONNECTION_S:
            self._flap_delay = 0.0
            return
        self._flap_delay = min(max(0.5, self._flap_delay * 2), self.reconnect_max_s)
        self.stop_event.wait(self._flap_delay)

    @property
    def stall_after_s(self) -> float:
        return max(2.0, 5.0 / self.camera.fps)

    def health(self) -> Health:
        now = time.time()
        state, message = self.stats.progress_state(now, self.stall_after_s)
        if state in ("degraded", "failed") and self.bus.refusing:  # silent because Redis is away, not stuck
            state, message = "degraded", self.bus.refusing
        if not self.is_alive() and not self.stop_event.is_set() and self.stats.state != "starting":
            state, message = "failed", "capture thread is not running"
        return Health(
            service="capture",
            instance=self.camera.id,
            camera_id=self.camera.id,
            state=state,
            message=message,
            counters=self.stats.as_counters(now),
        )

    def _connect(self) -> bool:
        backoff = Backoff(0.5, max(0.5, self.reconnect_max_s))
        while not self.stop_event.is_set():
            try:
                if self.stats.state == "reconnecting":
                    self.stats.reconnects += 1
                self.source.open()
                self._connected_at = time.monotonic()
                if self.stats.state == "reconnecting" and not self._flap_delay:
                    log.info("camera %s is back (%s)", self.camera.id, self.source.description)
                self.stats.state, self.stats.message = "ok", ""
                return True
            except SourceError as error:
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
                if not self._flap_delay:  # one line per outage, not one per failed attempt
                    log.warning("camera %s lost: %s", self.camera.id, error)
                self.source.close()
                return
            capture_ts = time.time()
            self.ring.commit(slot, self.seq, capture_ts)
            self._publish(slot, capture_ts, pixels)
            self.seq += 1

    def _publish(self, slot: int, capture_ts: float, pixels) -> None:
        jpeg = encode_jpeg(pixels, self.inline_jpeg_quality) if self.inline_jpeg_quality else None
        ref = FrameRef(
            camera_id=self.camera.id,
            seq=self.seq,
            capture_ts=capture_ts,
            width=self.camera.width,
            height=self.camera.height,
            shm_name=self.ring.name,
            slot=slot,
            jpeg=None if self.site_bus is not None else jpeg,
        )
        self.bus.publish(self.stream, ref, maxlen=FRAME_STREAM_MAXLEN)
        if self.site_bus is not None:
            self.site_bus.publish(self.stream, ref.model_copy(update={"jpeg": jpeg}), maxlen=FRAME_STREAM_MAXLEN)
        self.stats.frame_published(capture_ts)
