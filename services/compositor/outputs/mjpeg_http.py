"""A live MJPEG-over-HTTP preview: GET / shows it, GET /stream is multipart JPEG.

With the HLS output on, the same port also serves its playlist and segments under /hls/
(GET /hls/program.m3u8), so one published port gives a browser both.

Pictures are downscaled and JPEG-encoded only while someone watches, at most at the
preview rate; each viewer is served from its own thread and only ever gets the newest
picture. Loopback only and a capped number of clients unless configured otherwise (program_http.py).
"""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import cv2
import numpy as np

from services.compositor.outputs.program_http import LOOPBACK, CappedHTTPServer, client_gone
from services.compositor.outputs.program_output import ProgramOutput

log = logging.getLogger(__name__)
_BOUNDARY = "hybridcamframe"
_HLS_FILE = re.compile(r"^/hls/(program\.m3u8|program-\d{1,9}\.ts)$")
_HLS_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
_PAGE = b"<!doctype html><title>hybridcam program</title><body style='margin:0;background:#000'><img src='/stream' style='width:100%'>"


class MjpegHttpPreview(ProgramOutput):
    name = "mjpeg"
    wants_pictures = True

    def __init__(self, port: int, fps: float = 5.0, width: int = 960, quality: int = 75, host: str = LOOPBACK,
                 hls_folder: Path | None = None, max_clients: int = 8) -> None:
        super().__init__()
        self.hls_folder = hls_folder
        self.interval = 1.0 / fps
        self.width = width
        self.quality = quality
        self.viewers = 0
        self.idle_check_s = 5.0  # how often a stream without pictures looks for a client that hung up
        self._jpeg: bytes = b""
        self._version = 0
        self._changed = threading.Condition()
        self._last_encoded = 0.0
        self._small: np.ndarray | None = None
        self._closed = False
        self.host = host
        self.httpd = CappedHTTPServer((host, port), self._handler(), max_clients)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-http", daemon=True)

    def start(self, template: object) -> None:
        self._thread.start()

    def describe(self) -> str:
        return f"mjpeg -> http://{self.host}:{self.port}/ ({1 / self.interval:g} fps preview)"

    def send_picture(self, canvas: np.ndarray, now: float) -> None:
        if self.viewers == 0 or now - self._last_encoded < self.interval:
            return
        self._last_encoded = now
        height = round(canvas.shape[0] * self.width / canvas.shape[1])
        if self._small is None or self._small.shape[:2] != (height, self.width):
            self._small = np.empty((height, self.width, 3), dtype=np.uint8)
        cv2.resize(canvas, (self.width, height), dst=self._small, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", self._small, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            self.counters["encode_failures"] += 1
            return
        with self._changed:
            self._jpeg, self._version = data.tobytes(), self._version + 1
            self._changed.notify_all()
        self.counters["pictures"] += 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_picture(self, seen: int, timeout_s: float = 5.0) -> tuple[int, bytes] | None:
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen or self._closed, timeout=timeout_s)
            if self._closed or self._version == seen:
                return None
            return self._version, self._jpeg

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/":
                    self._send(200, "text/html", _PAGE)
                elif self.path == "/stream":
                    self._stream()
                elif preview.hls_folder is not None and (match := _HLS_FILE.match(self.path.split("?", 1)[0])):
                    self._hls_file(preview.hls_folder / match.group(1))
                else:
                    self.send_error(404, "only /, /stream and /hls/program.m3u8 are served here")

            def _hls_file(self, path: Path) -> None:
                try:
                    body = path.read_bytes()
                except OSError:
                    self.send_error(404, "not written (yet)")
                    return
                self._send(200, _HLS_TYPES[path.suffix], body)

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                preview.viewers += 1
                seen = 0
                try:
                    while True:
                        picture = preview._next_picture(seen, preview.idle_check_s)
                        if picture is None:
                            if preview._closed or client_gone(self.connection):
                                return
                            continue
                        seen, jpeg = picture
                        self.wfile.write(
                            f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    preview.viewers -= 1

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
