"""Security headers on every answer of the dashboard: a Content-Security-Policy that lets the page
load only its own script and styles (so an injected label can never run), plus nosniff and no framing."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlparse

from services.dashboard.access import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(image_origins: Iterable[str] = ()) -> str:
    images = " ".join(["'self'", "data:", "blob:", *sorted(set(image_origins))])
    return ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src {images}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def origin_of(url: str | None) -> str | None:
    """scheme://host[:port] of a URL (where presigned picture URLs point), None for nothing usable."""
    if not url:
        return None
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme in ("http", "https") and parsed.netloc else None


class SecurityHeaders:
    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
