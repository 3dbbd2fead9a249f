"""Event clips from the camera's own compressed stream: a rolling pre-roll of packets, remuxed, never re-encoded.

:class:`PacketBuffer` keeps the last ``pre_roll_s`` seconds of one camera's packets, back to the
keyframe before them (a clip must start on a keyframe). When an event opens, a
:class:`ClipRecorder` starts an MP4 with those packets and then takes each new packet as it
arrives until the event's end plus the post-roll, so memory stays at one pre-roll per camera
however long the event lasts. Packets are copied (PyAV remux), as NVRs cut recordings.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedPacket:
    """A compressed packet (its bytes and stream timestamps) and the site time (UTC epoch s) of its frame."""

    ts: float
    data: bytes
    pts: int
    dts: int
    time_base: Fraction
    keyframe: bool


@dataclass(frozen=True)
class EncodedStream:
    """What a clip of packets encoded here looks like (a camera without its own stream): the MP4's stream is
    declared with the encoder's own settings, and the packets carry their parameter sets in band."""

    codec: str
    width: int
    height: int
    rate: Fraction
    options: dict[str, str]

    def encoder(self) -> Any:
        context: Any = av.CodecContext.create(self.codec, "w")
        context.width, context.height, context.pix_fmt = self.width, self.height, "yuv420p"
        context.time_base, context.framerate = Fraction(1, 1000), self.rate
        context.options = dict(self.options)
        return context


class PacketBuffer:
    """The newest packets of one camera, from a keyframe at or before ``pre_roll_s`` ago."""

    def __init__(self, pre_roll_s: float, max_packets: int = 20_000) -> None:
        self.pre_roll_s = pre_roll_s
        self.packets: deque[TimedPacket] = deque(maxlen=max_packets)

    def add(self, item: TimedPacket) -> None:
        self.packets.append(item)
        cutoff = item.ts - self.pre_roll_s
        # drop whole GOPs while the next keyframe is still at or before the cutoff
        while True:
            second_key = next((i for i, p in enumerate(self.packets) if i > 0 and p.keyframe), None)
            if second_key is None or self.packets[second_key].ts > cutoff:
                break
            for _ in range(second_key):
                self.packets.popleft()

    def since(self, ts: float) -> list[TimedPacket]:
        """Packets from the last keyframe at or before ``ts`` (or the oldest keyframe held) onwards."""
        items = list(self.packets)
        start = 0
        for i, item in enumerate(items):
            if item.keyframe and item.ts <= ts:
                start = i
        while start < len(items) and not items[start].keyframe:
            start += 1
        return items[start:]


class ClipRecorder:
    """One event's clip being written: packets in, an MP4 out (moved into place when complete)."""

    def __init__(self, path: Path, template: Any, until_ts: float) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.until_ts = until_ts
        self.container = av.open(str(self.partial), mode="w", format="mp4")
        self.stream: Any
        if isinstance(template, EncodedStream):
            self.stream = self.container.add_stream(template.codec, rate=template.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = template.width, template.height, "yuv420p"
            self.stream.codec_context.options = dict(template.options)
        else:  # a demuxed stream: its codec parameters as they are
            self.stream = self.container.add_stream_from_template(template)
        self.first_ts: float | None = None
        self.first_pts: int | None = None
        self.last_dts: int | None = None
        self.packets = 0
        self.start_ts = 0.0
        self.end_ts = 0.0

    def write(self, item: TimedPacket) -> None:
        if self.first_pts is None:
            if not item.keyframe:
                return
            self.first_pts = item.dts
            self.first_ts = self.start_ts = item.ts
        base = self.first_pts
        pts, dts = item.pts - base, item.dts - base
        if self.last_dts is not None and dts <= self.last_dts:
            return
        copy = av.Packet(item.data)
        copy.pts, copy.dts, copy.time_base = pts, dts, item.time_base
        copy.is_keyframe = item.keyframe
        copy.stream = self.stream
        self.container.mux(copy)
        self.last_dts = dts
        self.packets += 1
        self.end_ts = item.ts

    def finish(self) -> int:
        """Close the file and move it into place; its size in bytes (0: nothing was written, no file)."""
        self.container.close()
        if self.packets == 0:
            self.partial.unlink(missing_ok=True)
            return 0
        os.replace(self.partial, self.path)
        return self.path.stat().st_size

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 (a half-written container may not close cleanly)
            pass
        self.partial.unlink(missing_ok=True)
