"""The super-resolution endpoint's container: SageMaker's inference contract on port 8080.

``GET /ping`` answers 200 when the server is up; ``POST /invocations`` takes image/jpeg with
``X-Amzn-SageMaker-Custom-Attributes: bucket=B;key=K;factor=F`` and answers image/jpeg
(endpoint.py). `hybridcam cloud sr-serve` runs it; the template's SuperResolution model runs the
project's image with that command.
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud.super_resolution.endpoint import EndpointError, SuperResolutionEndpoint

log = logging.getLogger("super_resolution.container")
MAX_BODY = 6 * 1024 * 1024  # SageMaker's real-time payload limit


class ContainerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: SuperResolutionEndpoint) -> None:
        super().__init__(address, ContainerHandler)
        self.endpoint = endpoint


class ContainerHandler(BaseHTTPRequestHandler):
    server: ContainerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(200 if self.path == "/ping" else 404, b"" if self.path == "/ping" else b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/invocations" or not 0 < length <= MAX_BODY:
            self._answer(404 if self.path != "/invocations" else 413, b"bad request", "text/plain")
            return
        body = self.rfile.read(length)
        try:
            jpeg, model = self.server.endpoint.invoke(body, self.headers.get("X-Amzn-SageMaker-Custom-Attributes", ""))
        except EndpointError as error:
            self._answer(400, str(error).encode(), "text/plain")
            return
        self._answer(200, jpeg, "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": f"model={model}"})

    def _answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(host: str = "0.0.0.0", port: int = 8080) -> None:  # noqa: S104 - SageMaker calls the container on 8080
    import boto3

    server = ContainerServer((host, port), SuperResolutionEndpoint(boto3.client("s3")))
    print(f"super-resolution endpoint container on http://{host}:{port} (GET /ping, POST /invocations)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
