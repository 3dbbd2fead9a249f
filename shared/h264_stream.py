"""H.264 access units over a byte stream: how the compositor hands its encoded program to the dashboard.

Each record is a 16-byte header and one Annex-B access unit (key frames carry their SPS/PPS
in front, so a reader may start at any key frame)::

    b"H4" | flags (1 byte, bit 0 = key frame) | 0 | payload length (u32) | pts in 1/90000 s (i64)

The length prefix keeps packet boundaries and timing exact, so the reader never has to wait
for the next access unit to know where this one ends (a raw .h264 parser would).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

MEDIA_TYPE = "application/x-hybridcam-h264"
CLOCK = Fraction(1, 90000)  # the RTP video clock
_HEADER = struct.Struct("!2sBxIq")
_MAGIC = b"H4"
_KEYFRAME = 0x01
MAX_ACCESS_UNIT = 16 * 1024 * 1024


class H264StreamError(ValueError):
    """The byte stream is not a hybridcam H.264 record stream (or is corrupt)."""


@dataclass(frozen=True)
class AccessUnit:
    data: bytes  # Annex-B
    pts: int  # in CLOCK units
    is_keyframe: bool


def encode_record(unit: AccessUnit) -> bytes:
    header = _HEADER.pack(_MAGIC, _KEYFRAME if unit.is_keyframe else 0, len(unit.data), unit.pts)
    return header + unit.data


def to_clock(pts: int, time_base: Fraction) -> int:
    return int(pts * time_base / CLOCK)


class RecordReader:
    """Incremental parser: feed it chunks as they arrive, take the complete access units."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[AccessUnit]:
        self._buffer += chunk
        while len(self._buffer) >= _HEADER.size:
            magic, flags, length, pts = _HEADER.unpack_from(self._buffer)
            if magic != _MAGIC or length > MAX_ACCESS_UNIT:
                raise H264StreamError(f"not an H.264 record (magic {bytes(magic)!r}, length {length})")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            yield AccessUnit(bytes(self._buffer[_HEADER.size:end]), pts, bool(flags & _KEYFRAME))
            del self._buffer[:end]
