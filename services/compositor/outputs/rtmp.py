"""RTMP push (FLV) from a sender thread, so a slow or absent server never stalls the program.

Packets wait in a short queue; when it is full, packets are dropped until the next key
frame (a decoder can resume there). A lost connection is retried every few seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import av

from services.compositor.encoder import EncodedPacket
from services.compositor.outputs.program_output import ContainerOutput

log = logging.getLogger(__name__)


class RtmpPush(ContainerOutput):
    name = "rtmp"

    def __init__(self, url: str, queue_packets: int = 90, retry_s: float = 3.0) -> None:
        super().__init__(url, "flv", {})
        self.retry_s = retry_s
        self._queue: queue.Queue[EncodedPacket | None] = queue.Queue(maxsize=queue_packets)
        self._template: av.stream.Stream | None = None
        self._waiting_for_keyframe = True
        self._thread = threading.Thread(target=self._send_forever, name="rtmp-push", daemon=True)

    def start(self, template: av.stream.Stream) -> None:
        self._template = template
        self._thread.start()

    def send_packet(self, packet: EncodedPacket) -> None:
        if self._waiting_for_keyframe and not packet.is_keyframe:
            self.counters["dropped"] += 1
            return
        try:
            self._queue.put_nowait(packet)
            self._waiting_for_keyframe = False
        except queue.Full:
            self.counters["dropped"] += 1
            self._waiting_for_keyframe = True

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        super().close()

    def _send_forever(self) -> None:
        assert self._template is not None
        while True:
            packet = self._queue.get()
            if packet is None:
                return
            try:
                if self._container is None:
                    if not packet.is_keyframe:
                        continue
                    super().start(self._template)
                    log.info("rtmp: connected to %s", self.target)
                super().send_packet(packet)
            except (av.FFmpegError, OSError) as error:
                self.counters["errors"] += 1
                log.warning("rtmp: push to %s failed (%s); retrying in %.0f s", self.target, error, self.retry_s)
                self._container = None
                time.sleep(self.retry_s)
