"""A tiny /health HTTP endpoint every service can expose (Docker health checks read it).

GET /health answers 200 with the service's JSON snapshot while its state is "ok" or
"degraded", 503 otherwise. It runs in a daemon thread and never touches the frame path.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEALTHY_STATES = frozenset({"ok", "degraded"})

Snapshot = Callable[[], dict[str, Any]]


class HealthServer:
    def __init__(self, port: int, snapshot: Snapshot, host: str = "0.0.0.0") -> None:
        handler = _make_handler(snapshot)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(snapshot: Snapshot) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") != "/health":
                self.send_error(404, "only /health is served here")
                return
            body = snapshot()
            status = 200 if body.get("state") in HEALTHY_STATES else 503
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
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
