"""Checks every request passes before any route (an ASGI middleware, so live streams stay streams).

- **Host**: without a token the dashboard trusts whoever reaches it on loopback, so the Host header
  must name loopback (or one of HYBRIDCAM_DASHBOARD_ALLOWED_HOSTS): a DNS-rebinding page, which
  reaches 127.0.0.1 under its own name, is refused (421) before it can read names or face crops.
- **Cross-site writes**: a POST whose Origin is not this dashboard (or that the browser marks
  ``Sec-Fetch-Site: cross-site``) is refused (403), and a POST with a body must say
  ``Content-Type: application/json`` (415): a ``no-cors`` form or text POST from another site can
  neither open a WebRTC viewer nor anything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlparse

from starlette.responses import PlainTextResponse

from services.dashboard.access import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host_header: str) -> str:
    """The name of a Host header without its port ("[::1]:8088" -> "::1")."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class RequestGuard:
    def __init__(self, app: ASGIApp, check_host: bool, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.check_host = check_host
        self.allowed_hosts = LOOPBACK_NAMES | {h.strip().lower() for h in allowed_hosts if h.strip()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            status, text = refusal
            await PlainTextResponse(text, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        host = _header(scope, b"host")
        if self.check_host and host_name(host) not in self.allowed_hosts:
            return 421, (f"this dashboard answers only to loopback names, not {host_name(host)!r} "
                         "(set HYBRIDCAM_DASHBOARD_ALLOWED_HOSTS, or a token, to serve it under another name)")
        if scope.get("method") != "POST":
            return None
        origin = _header(scope, b"origin")
        if _header(scope, b"sec-fetch-site") == "cross-site" or (origin and urlparse(origin).netloc.lower() != host.lower()):
            return 403, "cross-site requests may not change anything here"
        has_body = _header(scope, b"content-length") not in ("", "0") or _header(scope, b"transfer-encoding") != ""
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        if has_body and content_type != "application/json":
            return 415, "send the body as Content-Type: application/json"
        return None
