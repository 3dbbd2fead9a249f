"""A tiny HTTP endpoint every service can expose: /health for Docker, /metrics for Prometheus.

GET /health answers 200 with the service's JSON snapshot while its state is "ok" or
"degraded", 503 otherwise. GET /metrics answers the service's Prometheus registry (see
shared/metrics.py) when it was given one. It runs in a daemon thread and never touches the
frame path.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HEALTHY_STATES = frozenset({"ok", "degraded"})

Snapshot = Callable[[], dict[str, Any]]


class HealthServer:
    def __init__(self, port: int, snapshot: Snapshot, host: str = "0.0.0.0",
                 metrics: CollectorRegistry | None = None) -> None:
        handler = _make_handler(snapshot, metrics)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(snapshot: Snapshot, metrics: CollectorRegistry | None) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                body = snapshot()
                status = 200 if body.get("state") in HEALTHY_STATES else 503
                self._answer(status, "application/json", json.dumps(body, default=str).encode())
            elif path == "/metrics" and metrics is not None:
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics))
            else:
                self.send_error(404, "only /health and /metrics are served here")

        def _answer(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # health probes are not news
            return

    return HealthHandler


def probe(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask a /health endpoint; (healthy, one-line reason)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read() or b"{}")
            return True, f"{body.get('service', '?')} {body.get('state', '?')}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return False, str(getattr(error, "reason", error))
