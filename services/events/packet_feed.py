"""A camera's compressed video stream, packet by packet, stamped with site time: the clips' raw material.

Files and RTSP/HTTP cameras are demuxed with PyAV and nothing is decoded: the events service opens
the camera's stream beside capture (an NVR's record stream). A file is paced at its own frame rate
and loops like capture's file source, its timestamps kept increasing across loops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import av

from services.events.clip_buffer import TimedPacket

log = logging.getLogger(__name__)

CLIP_CODECS = ("h264", "hevc")


class FeedError(Exception):
    """The stream cannot be demuxed for clips (not reachable, or not H.264/H.265)."""


def feed_target(source: str) -> tuple[str, bool] | None:
    """(what to open, whether it is a file to pace and loop) for a camera source; None when it has no
    compressed stream of its own (synthetic, USB)."""
    parsed = urlparse(source.strip())
    scheme = parsed.scheme.lower()
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https"):
        return source, False
    if scheme in ("file", ""):
        if source.strip() == "synthetic":
            return None
        path = parsed.netloc + parsed.path if scheme == "file" and parsed.netloc not in ("", "localhost") else parsed.path
        loop = parse_qs(parsed.query).get("loop", ["1"])[0] not in ("0", "false", "no")
        return str(Path(path)), loop
    return None


class DemuxedFeed:
    """Packets of the first video stream of ``target``. Stamped with their arrival time, or, with ``origin_ts``
    (a replay), with that time plus their position in the file."""

    def __init__(self, target: str, loop: bool = False, paced: bool = True, origin_ts: float | None = None) -> None:
        self.target = target
        self.loop = loop
        self.paced = paced
        self.origin_ts = origin_ts
        self.container: Any = None
        self.stream: Any = None

    def open(self) -> Any:
        try:
            self.container = av.open(self.target, options={"rtsp_transport": "tcp"} if self.target.startswith("rtsp") else {})
        except (av.error.FFmpegError, OSError) as error:
            raise FeedError(f"cannot open {self.target} for clips: {error}") from None
        videos = self.container.streams.video
        if not videos:
            raise FeedError(f"{self.target} has no video stream")
        self.stream = videos[0]
        if self.stream.codec_context.name not in CLIP_CODECS:
            raise FeedError(f"{self.target} is {self.stream.codec_context.name}; clips are remuxed from H.264 or H.265 only")
        return self.stream

    def packets(self, stop: threading.Event | None = None) -> Iterator[TimedPacket]:
        if self.stream is None:
            self.open()
        time_base = Fraction(self.stream.time_base.numerator, self.stream.time_base.denominator)
        origin = time.time() if self.origin_ts is None else self.origin_ts
        offset, loop_length, started = 0, 0, time.monotonic()
        while stop is None or not stop.is_set():
            last = 0
            for packet in self.container.demux(self.stream):
                if packet.size == 0 or packet.dts is None:
                    continue
                pts = (packet.pts if packet.pts is not None else packet.dts) + offset
                dts = packet.dts + offset
                last = max(last, pts + (packet.duration or 0))
                media_s = float(pts * time_base)
                if self.paced:
                    delay = media_s - (time.monotonic() - started)
                    if delay > 0 and stop is not None and stop.wait(delay):
                        return
                # live: the packet's arrival is its site time (capture stamps frames the same way); a replay
                # of a file at full speed maps the file's clock onto the given origin
                ts = origin + media_s if self.origin_ts is not None else time.time()
                yield TimedPacket(ts, bytes(packet), pts, dts, time_base, bool(packet.is_keyframe))
                if stop is not None and stop.is_set():
                    return
            if not self.loop:
                return
            loop_length = max(last, loop_length)
            offset = loop_length
            self.container.seek(0, stream=self.stream)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def run_feed(feed: DemuxedFeed, deliver: Callable[[TimedPacket], None], stop: threading.Event,
             reopened: Callable[[Any], None] | None = None, retry_s: float = 5.0) -> None:
    """Deliver packets until stopped, reopening a lost stream after ``retry_s`` (``reopened`` gets its new stream,
    the template of the clips cut from then on)."""
    while not stop.is_set():
        try:
            if feed.stream is None:
                stream = feed.open()
                if reopened is not None:
                    reopened(stream)
            for item in feed.packets(stop):
                deliver(item)
            if not feed.loop:
                return
        except (FeedError, av.error.FFmpegError, OSError) as error:
            log.warning("clip stream %s lost: %s; retrying in %.0f s", feed.target, error, retry_s)
        feed.close()
        feed.stream = None
        stop.wait(retry_s)
