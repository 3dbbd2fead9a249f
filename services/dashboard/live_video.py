"""Sources of H.264 access units for the WebRTC view, each shared by every viewer of it.

* :class:`ProgramRelay` reads the compositor's own encoded program (its ``h264`` output,
  shared/h264_stream.py) over HTTP: no second encode, whatever the number of viewers.
* :class:`CameraEncoder` encodes one camera for viewers who ask for it: frames from the
  camera's shared-memory ring, downscaled and encoded once with libx264 (ultrafast,
  zerolatency) in a thread. This is the one second encode; it runs only while someone watches.

A source runs while it has subscribers and stops when the last one leaves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import cv2
import httpx
import numpy as np
import redis

from shared.backoff import Backoff
from shared.frame_ring import FrameFetcher, FrameGone
from shared.h264_stream import CLOCK, AccessUnit, H264StreamError, RecordReader
from shared.schemas import FrameRef, SchemaError, decode_as
from shared.stream_bus import PAYLOAD_FIELD, frames_stream

log = logging.getLogger(__name__)
Subscriber = Callable[[AccessUnit], None]


class UnitSource:
    """Fans access units out to subscribers; started by the first, stopped after the last."""

    name = "source"

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.counters: Counter[str] = Counter()

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        if len(self.subscribers) == 1:
            self._start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            if not self.subscribers:
                self._stop()

    @property
    def running(self) -> bool:
        return False

    def restart(self) -> None:
        """Start again after the relay or encoder died while subscribers remain."""
        self.counters["restarts"] += 1
        self._stop()
        self._start()

    def _publish(self, unit: AccessUnit) -> None:
        self.counters["units"] += 1
        for subscriber in list(self.subscribers):
            subscriber(unit)

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError


class ProgramRelay(UnitSource):
    name = "program"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.problem = ""
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="program-h264")

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow(self) -> None:
        backoff = Backoff(0.5, 5.0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=10.0)) as client:
            while True:
                try:
                    await self._read(client)
                except (httpx.HTTPError, H264StreamError) as error:
                    self.problem = f"program stream at {self.url}: {type(error).__name__} {error}".strip()
                    self.counters["reconnects"] += 1
                    log.warning("%s; retrying", self.problem)
                await asyncio.sleep(backoff.next_delay())

    async def _read(self, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", self.url) as answer:
            if answer.status_code != 200:
                raise httpx.HTTPStatusError(f"answered {answer.status_code}", request=answer.request, response=answer)
            self.problem = ""
            reader, stamp = RecordReader(), 0
            async for chunk in answer.aiter_raw():
                arrived = int(time.monotonic() / CLOCK)
                for unit in reader.feed(chunk):
                    # Stamped on arrival, not with the program clock: a picture that took longer to encode
                    # then looks on time to the browser, whose jitter buffer (its added delay) stays small.
                    stamp = max(stamp + 1, arrived)
                    self._publish(AccessUnit(unit.data, stamp, unit.is_keyframe))


class CameraEncoder(UnitSource):
    """One camera's frames, downscaled to ``width`` and encoded once for all its viewers."""

    def __init__(self, camera_id: str, redis_url: str, width: int, fps_hint: float = 15.0) -> None:
        super().__init__()
        self.name = f"camera:{camera_id}"
        self.camera_id = camera_id
        self.redis_url = redis_url
        self.width = width
        self.fps_hint = fps_hint
        self.seconds_encoding = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._encode_forever, args=(self._stop_event,), name=self.name, daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._stop_event.set()
        self._thread = None

    def _encode_forever(self, stop: threading.Event) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
        fetcher = FrameFetcher()
        encoder: _Encoder | None = None
        last_id, started = "$", time.monotonic()
        try:
            while not stop.is_set():
                try:
                    reply: list[Any] = client.xread({frames_stream(self.camera_id): last_id}, count=10, block=500)  # type: ignore[assignment]
                except (redis.ConnectionError, redis.TimeoutError) as error:
                    self.counters["redis_errors"] += 1
                    log.warning("camera view %s: redis unreachable (%s)", self.camera_id, error)
                    stop.wait(1.0)
                    continue
                for _stream, entries in reply or []:
                    last_id = entries[-1][0]
                    ref = self._newest_ref(entries)
                    if ref is None:
                        continue
                    try:
                        pixels = fetcher.fetch(ref)
                    except (FrameGone, ValueError, FileNotFoundError):
                        self.counters["frames_gone"] += 1
                        continue
                    encoder = encoder or _Encoder(self.width, pixels.shape[1], pixels.shape[0], self.fps_hint)
                    began = time.thread_time()
                    units = encoder.encode(pixels, time.monotonic() - started)
                    self.seconds_encoding += time.thread_time() - began
                    for unit in units:
                        assert self._loop is not None
                        self._loop.call_soon_threadsafe(self._publish, unit)
        finally:
            fetcher.close()
            client.close()

    def _newest_ref(self, entries: list) -> FrameRef | None:
        for _entry_id, fields in reversed(entries):
            try:
                return decode_as(fields.get(PAYLOAD_FIELD, b""), FrameRef)
            except SchemaError:
                self.counters["undecodable"] += 1
        return None


class _Encoder:
    """libx264 without a global header, so every key frame carries its SPS/PPS in band."""

    def __init__(self, width: int, src_w: int, src_h: int, fps_hint: float) -> None:
        self.width = min(width, src_w) // 2 * 2
        self.height = round(src_h * self.width / src_w) // 2 * 2
        self.context = av.CodecContext.create("libx264", "w")
        self.context.width, self.context.height, self.context.pix_fmt = self.width, self.height, "yuv420p"
        self.context.time_base = Fraction(1, 1000)
        gop = str(max(1, round(fps_hint)))
        self.context.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "26", "g": gop, "keyint_min": gop, "bf": "0"}
        self._small = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._yuv = np.empty((self.height * 3 // 2, self.width), dtype=np.uint8)
        self._last_ms = -1

    def encode(self, pixels: np.ndarray, elapsed_s: float) -> list[AccessUnit]:
        cv2.resize(pixels, (self.width, self.height), dst=self._small, interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2YUV_I420, dst=self._yuv)
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        self._last_ms = max(self._last_ms + 1, int(elapsed_s * 1000))
        frame.pts, frame.time_base = self._last_ms, self.context.time_base
        return [AccessUnit(bytes(p), int((p.pts or 0) * self.context.time_base / CLOCK), bool(p.is_keyframe))
                for p in self.context.encode(frame)]
