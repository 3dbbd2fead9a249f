"""Pieces the edge fault scenarios share: an AWS endpoint that can be cut or made to throttle, frame
rates read back from the streams, and bookkeeping of the service processes a scenario runs."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import yaml

from devstack.servers import free_port
from shared.stream_bus import StreamBus, frames_stream

REPO_ROOT = Path(__file__).resolve().parents[2]

SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")


class AwsEndpoint:
    """A reverse proxy in front of the moto server, standing in for the internet path to AWS.

    ``cut()`` closes its port (connections are refused, as with the uplink down) and ``restore()``
    opens it again on the same port; ``slow_down_puts`` makes every other S3 PUT answer 503 SlowDown;
    ``hold_sqs_deletes_s`` delays SQS DeleteMessage(Batch) calls (to kill a client between its write
    and its delete).
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = free_port()
        self.slow_down_puts = False
        self.hold_sqs_deletes_s = 0.0
        self.counters: dict[str, int] = {"puts": 0, "slowed_down": 0, "deletes_held": 0, "requests": 0}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AwsEndpoint:
        handler = _proxy_handler(self)
        server = _QuietServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="aws-endpoint", daemon=True).start()
        self._server = server
        return self

    def cut(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restore(self) -> None:
        if self._server is None:
            self.start()

    def stop(self) -> None:
        self.cut()

    def _should_slow_down(self, method: str) -> bool:
        if not self.slow_down_puts or method != "PUT":
            return False
        with self._lock:
            self.counters["puts"] += 1
            slow = self.counters["puts"] % 2 == 1
            self.counters["slowed_down"] += int(slow)
            return slow


class _QuietServer(ThreadingHTTPServer):
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:  # a client gone mid-answer is expected here
        return


def _proxy_handler(endpoint: AwsEndpoint) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            endpoint.counters["requests"] += 1
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if endpoint._should_slow_down(self.command):
                self._answer(503, {"Content-Type": "application/xml"}, SLOWDOWN_BODY)
                return
            target = self.headers.get("X-Amz-Target", "")
            if endpoint.hold_sqs_deletes_s and ("DeleteMessage" in target or b"Action=DeleteMessage" in body):
                endpoint.counters["deletes_held"] += 1
                time.sleep(endpoint.hold_sqs_deletes_s)
            upstream = http.client.HTTPConnection(*endpoint.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            reply_headers = {k: v for k, v in reply.getheaders()
                             if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")}
            upstream.close()
            self._answer(reply.status, reply_headers, data)

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")  # one request per connection: a cut is felt at once
            self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            return

    return Proxy


def recent_fps(bus: StreamBus, camera_id: str, window_s: float = 2.0, lag_s: float = 0.3) -> float:
    """Frames a camera published per second over the last ``window_s`` (from the stream's entry ids)."""
    now_ms = int(time.time() * 1000 - lag_s * 1000)
    entries = bus.redis.xrevrange(frames_stream(camera_id), "+", "-", count=int(window_s * 200) + 10)
    stamps = [int(raw_id.split(b"-")[0]) for raw_id, _ in entries]
    return sum(1 for ms in stamps if now_ms - window_s * 1000 <= ms <= now_ms) / window_s


def write_fault_site(path: Path, cameras: list[dict], fps: float = 4, width: int = 320, height: int = 180,
                     people: int = 3, every: int = 4) -> Path:
    site = {
        "site": "faults",
        "defaults": {"width": width, "height": height, "fps": fps, "cloud_sample_every": every},
        "synthetic_scene": {"seed": 7, "people": people, "scenario": "wander"},
        "cameras": cameras,
    }
    path.write_text(yaml.safe_dump(site))
    return path


def synthetic_cameras(count: int) -> list[dict]:
    cameras = [{"id": "wide", "role": "master", "source": "synthetic"}]
    for i in range(1, count):
        region = [(i - 1) % 3 / 3, 0.0, (i - 1) % 3 / 3 + 1 / 3, 1.0]
        cameras.append({"id": f"cam{i}", "role": "slave", "source": "synthetic", "covers": {"master": "wide", "region": region}})
    return cameras


def kill9(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def rss_mb(process: subprocess.Popen) -> float:
    return psutil.Process(process.pid).memory_info().rss / 1e6


def exits(processes: dict[str, subprocess.Popen]) -> dict[str, int]:
    """Processes that ended on their own, with their exit codes."""
    return {name: p.returncode for name, p in processes.items() if p.poll() is not None}


class MjpegCamera:
    """An HTTP MJPEG camera on a loopback port that misbehaves on purpose.

    ``stall``: streams ``fps`` frames for ``stall_after_s`` on its first connection, then sends nothing
    more (the socket stays open); later connections are accepted and never answered.
    ``hang_up``: answers every connection with a few frames and closes it (it opens, then its reads fail).
    """

    def __init__(self, mode: str, jpeg: bytes, fps: float = 5.0, stall_after_s: float = 6.0) -> None:
        import socket

        self.mode = mode
        self.jpeg = jpeg
        self.fps = fps
        self.stall_after_s = stall_after_s
        self.connections = 0
        self._sockets: list = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name=f"mjpeg-{mode}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._sockets.append(connection)
            threading.Thread(target=self._serve, args=(connection, self.connections), daemon=True).start()

    def _part(self) -> bytes:
        return (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(self.jpeg)).encode() + b"\r\n\r\n"
                + self.jpeg + b"\r\n")

    def _serve(self, connection, number: int) -> None:
        try:
            connection.recv(65536)  # the request
            if self.mode == "stall" and number > 1:
                self._stop.wait()  # accepted, never answered
                return
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            if self.mode == "hang_up":
                for _ in range(3):  # enough for the open to succeed; every read after that fails
                    connection.sendall(self._part())
                connection.close()
                return
            started = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - started < self.stall_after_s:
                connection.sendall(self._part())
                time.sleep(1.0 / self.fps)
            self._stop.wait()  # stalled: the connection stays open and silent
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for connection in self._sockets:
            try:
                connection.close()
            except OSError:
                pass
