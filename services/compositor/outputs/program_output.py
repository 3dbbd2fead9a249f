"""The one interface every program output implements, and the shared container muxer.

An output takes encoded H.264 packets (MP4, HLS, RTMP: muxed, never re-encoded) and/or
finished pictures (the MJPEG preview). ``send_*`` must never block the program clock.
"""

from __future__ import annotations

import logging
from collections import Counter

import av
import numpy as np

from services.compositor.encoder import EncodedPacket

log = logging.getLogger(__name__)


class ProgramOutput:
    name = "output"
    wants_packets = False
    wants_pictures = False

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def start(self, template: av.stream.Stream) -> None:
        """Called once, with the encoder's stream (size, rate, extradata) as the template."""

    def send_packet(self, packet: EncodedPacket) -> None:
        raise NotImplementedError

    def send_picture(self, canvas: np.ndarray, now: float) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def warning(self) -> str:
        """A condition the operator should know about (low disk, ...); "" when none."""
        return ""

    def close(self) -> None:
        """Finish files / connections."""


class ContainerOutput(ProgramOutput):
    """Muxes the encoder's packets into one FFmpeg container (file, playlist or URL)."""

    wants_packets = True

    def __init__(self, target: str, container_format: str, options: dict[str, str]) -> None:
        super().__init__()
        self.target = target
        self.container_format = container_format
        self.options = options
        self._container: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None

    def start(self, template: av.stream.Stream) -> None:
        self._container = av.open(self.target, "w", format=self.container_format, options=self.options)
        self._stream = self._container.add_stream_from_template(template)

    def send_packet(self, packet: EncodedPacket) -> None:
        if self._container is None or self._stream is None:
            return
        self._container.mux(packet.to_av(self._stream))
        self.counters["packets"] += 1

    def describe(self) -> str:
        return f"{self.name} -> {self.target}"

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError) as error:
                log.warning("%s did not close cleanly: %s", self.name, error)
            self._container = None
