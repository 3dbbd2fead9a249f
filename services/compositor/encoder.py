"""Encodes the program once with libx264; every muxing output gets the same packets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class EncodedPacket:
    """A copy of one H.264 packet, safe to hand to several muxers (muxing consumes packets)."""

    data: bytes
    pts: int
    dts: int
    is_keyframe: bool
    time_base: Fraction

    def to_av(self, stream: av.stream.Stream) -> av.Packet:
        packet = av.Packet(self.data)
        packet.pts, packet.dts = self.pts, self.dts
        packet.time_base = self.time_base
        packet.is_keyframe = self.is_keyframe
        packet.stream = stream
        return packet


class H264Encoder:
    """libx264 (zerolatency, no B-frames) hosted by a null container.

    The null container only exists so the encoder has a stream whose codec parameters
    (size, rate, SPS/PPS extradata) other containers can copy with add_stream_from_template.
    """

    def __init__(self, width: int, height: int, fps: float, preset: str = "ultrafast", crf: int = 26, keyframe_s: float = 1.0,
                 max_kbps: float = 0.0) -> None:
        self.rate = Fraction(fps).limit_denominator(1001)
        self.time_base = 1 / self.rate
        self._host = av.open(os.devnull, "w", format="null")
        self.stream = self._host.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        context = self.stream.codec_context
        context.time_base = self.time_base
        gop = max(1, round(float(self.rate) * keyframe_s))
        context.options = {"preset": preset, "tune": "zerolatency", "crf": str(crf), "g": str(gop), "keyint_min": str(gop), "bf": "0", "sc_threshold": "0"}
        if max_kbps:  # capped CRF: the quality CRF gives, but never more than the uplink's part for the program
            context.options |= {"maxrate": f"{int(max_kbps)}k", "bufsize": f"{int(max_kbps) // 2}k"}
        context.flags |= av.codec.context.Flags.global_header
        context.open()
        self._host.start_encoding()  # copies size, rate and extradata into the stream's parameters
        self._yuv = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self.frames = 0

    def encode(self, canvas: np.ndarray, pts: int) -> list[EncodedPacket]:
        cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420, dst=self._yuv)
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, self.time_base
        self.frames += 1
        return self._copy(self.stream.codec_context.encode(frame))

    def flush(self) -> list[EncodedPacket]:
        return self._copy(self.stream.codec_context.encode(None))

    def close(self) -> None:
        self._host.close()

    def _copy(self, packets: list[av.Packet]) -> list[EncodedPacket]:
        return [self._packet(p) for p in packets]

    def _packet(self, packet: av.Packet) -> EncodedPacket:
        if packet.pts is None:
            raise ValueError("the encoder returned a packet without a presentation time")
        pts = int(packet.pts)
        dts = int(packet.dts) if packet.dts is not None else pts
        return EncodedPacket(bytes(packet), pts, dts, bool(packet.is_keyframe), packet.time_base or self.time_base)
