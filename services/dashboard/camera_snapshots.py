"""Camera tile pictures: a frame from the camera's shared-memory ring, downscaled and JPEG-encoded.

A page asks for the frame its latest detections were made on (``seq``); when the ring has
already moved past it, the newest frame still held is served instead. Pictures are made
only when a page asks, which it does when new detections arrive, not on a timer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import redis

from shared.frame_ring import FrameFetcher, FrameGone, encode_jpeg
from shared.schemas import FrameRef, SchemaError, decode_as
from shared.stream_bus import frames_stream, payload_of, stream_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    seq: int
    capture_ts: float
    exact: bool  # the frame asked for, not a newer stand-in


class CameraSnapshots:
    def __init__(self, client: redis.Redis, width: int = 640, quality: int = 80, lookback: int = 64) -> None:
        self.client = client
        self.width = width
        self.quality = quality
        self.lookback = lookback
        self.fetcher = FrameFetcher()
        self._lock = threading.Lock()  # FrameFetcher keeps attached rings in a plain dict
        # Pictures are made only on request, so a ring replaced by a capture restart would stay
        # mapped until the next one: let go of replaced rings on a timer too.
        self._closed = threading.Event()
        threading.Thread(target=self._release_stale_rings, name="ring-sweep", daemon=True).start()

    def picture(self, camera_id: str, seq: int | None = None) -> Snapshot | None:
        refs = self._recent_refs(camera_id)
        wanted = [r for r in refs if r.seq == seq] if seq is not None else []
        for ref in wanted + refs:
            pixels = self._pixels(ref)
            if pixels is not None:
                return Snapshot(encode_jpeg(self._downscale(pixels), self.quality), ref.seq, ref.capture_ts,
                                exact=seq is None or ref.seq == seq)
        return None

    def _recent_refs(self, camera_id: str) -> list[FrameRef]:
        refs = []
        for _entry_id, fields in stream_items(self.client.xrevrange(frames_stream(camera_id), count=self.lookback)):
            try:
                refs.append(decode_as(payload_of(fields), FrameRef))
            except SchemaError:
                continue
        return refs

    def _pixels(self, ref: FrameRef) -> np.ndarray | None:
        try:
            with self._lock:
                return self.fetcher.fetch(ref)
        except (FrameGone, ValueError, FileNotFoundError) as error:
            log.debug("frame %s of %s not readable: %s", ref.seq, ref.camera_id, error)
            return None

    def _downscale(self, pixels: np.ndarray) -> np.ndarray:
        height, width = pixels.shape[:2]
        if width <= self.width:
            return pixels
        return cv2.resize(pixels, (self.width, round(height * self.width / width)), interpolation=cv2.INTER_AREA)

    def _release_stale_rings(self, interval_s: float = 1.0) -> None:
        while not self._closed.wait(interval_s):
            with self._lock:
                self.fetcher.release_stale()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self.fetcher.close()
