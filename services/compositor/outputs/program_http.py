"""The HTTP server under the compositor's preview (MJPEG, HLS) and encoded-program (H.264) outputs.

These servers have no authentication: they bind loopback unless HYBRIDCAM_COMPOSITOR_OUTPUT_HOST
says otherwise (a container, whose port is published on the host's loopback, or a closed
network), and the dashboard relays them to its users behind its token. Each client is served
by a thread of its own, so the number of clients is capped: one past the cap gets 503 at once.
"""

from __future__ import annotations

import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
BUSY_ANSWER = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
               b"too many clients (HYBRIDCAM_COMPOSITOR_OUTPUT_MAX_CLIENTS)\n")


class CappedHTTPServer(ThreadingHTTPServer):
    """A thread per client, at most ``max_clients`` at once; the rest are refused with 503."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_clients: int) -> None:
        super().__init__(address, handler)
        self.max_clients = max_clients
        self.clients = 0
        self.refused = 0
        self._count_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            admitted = self.clients < self.max_clients
            if admitted:
                self.clients += 1
            else:
                self.refused += 1
        if not admitted:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count_lock:
            self.clients -= 1

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(1.0)
            request.sendall(BUSY_ANSWER)
        except OSError:
            pass
        self.shutdown_request(request)


def client_gone(connection: socket.socket) -> bool:
    """The client hung up (checked while its stream has nothing to send, so it never holds a place for ever)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
