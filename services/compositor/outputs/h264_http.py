"""The encoded program, live over HTTP, for the dashboard's WebRTC view (no second encode).

GET /stream answers a never-ending body of length-framed Annex-B access units
(shared/h264_stream.py). A reader starts at the next key frame; its packets wait in a short
queue served by its own thread, and a reader that falls behind loses packets up to the next
key frame (counted), never slows the program. Loopback only and a capped number of clients
unless configured otherwise (program_http.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler

import av

from services.compositor.encoder import EncodedPacket
from services.compositor.outputs.program_http import LOOPBACK, CappedHTTPServer, client_gone
from services.compositor.outputs.program_output import ProgramOutput
from shared.h264_stream import MEDIA_TYPE, AccessUnit, encode_record, to_clock

log = logging.getLogger(__name__)


class _Reader:
    def __init__(self, queue_packets: int) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_packets)
        self.waiting_for_keyframe = True


class H264HttpStream(ProgramOutput):
    name = "h264"
    wants_packets = True

    def __init__(self, port: int, host: str = LOOPBACK, queue_packets: int = 30, max_clients: int = 8) -> None:
        super().__init__()
        self.queue_packets = queue_packets
        self.idle_check_s = 5.0  # how often a stream without packets looks for a client that hung up
        self._readers: set[_Reader] = set()
        self._lock = threading.Lock()
        self._parameter_sets = b""
        self.host = host
        self.httpd = CappedHTTPServer((host, port), self._handler(), max_clients)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="h264-http", daemon=True)

    @property
    def readers(self) -> int:
        return len(self._readers)

    def start(self, template: av.stream.Stream) -> None:
        # libx264 with a global header keeps SPS/PPS out of the packets: put them before every key frame.
        self._parameter_sets = bytes(template.codec_context.extradata or b"")
        self._thread.start()

    def describe(self) -> str:
        return f"h264 -> http://{self.host}:{self.port}/stream (encoded program for the dashboard's WebRTC view)"

    def send_packet(self, packet: EncodedPacket) -> None:
        if not self._readers:
            return
        record = b""
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            if reader.waiting_for_keyframe and not packet.is_keyframe:
                continue
            if not record:
                data = self._parameter_sets + packet.data if packet.is_keyframe else packet.data
                record = encode_record(AccessUnit(data, to_clock(packet.pts, packet.time_base), packet.is_keyframe))
            try:
                reader.queue.put_nowait(record)
                reader.waiting_for_keyframe = False
            except queue.Full:
                reader.waiting_for_keyframe = True
                self.counters["dropped"] += 1
        self.counters["packets"] += 1

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                try:
                    reader.queue.put_nowait(None)
                except queue.Full:
                    pass
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        output = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection does

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/stream":
                    self.send_error(404, "only /stream is served here")
                    return
                self.send_response(200)
                self.send_header("Content-Type", MEDIA_TYPE)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                reader = _Reader(output.queue_packets)
                with output._lock:
                    output._readers.add(reader)
                try:
                    while True:
                        try:
                            record = reader.queue.get(timeout=output.idle_check_s)
                        except queue.Empty:
                            if client_gone(self.connection):
                                return
                            continue
                        if record is None:
                            return
                        self.wfile.write(record)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with output._lock:
                        output._readers.discard(reader)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
