"""Token check in front of every route but /health, WebSockets included (an ASGI middleware, so live streams stay streams).

The token may come as ``Authorization: Bearer <token>``, as the ``hybridcam_token`` cookie,
or once as ``?token=<token>`` in the address: the answer then sets the cookie, so the
page's pictures and event stream carry it without putting it in every URL. The cookie is
``Secure`` when the page came over HTTPS, directly or through a TLS proxy that says so in
``X-Forwarded-Proto`` (or always, with HYBRIDCAM_DASHBOARD_SECURE_COOKIE=true).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "hybridcam_token"
OPEN_PATHS = frozenset({"/health"})


def presented_token(request: HTTPConnection) -> tuple[str, bool]:
    """(token, came in the query string)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    if COOKIE_NAME in request.cookies:
        return request.cookies[COOKIE_NAME], False
    return request.query_params.get("token", ""), "token" in request.query_params


def came_over_https(scope: Scope) -> bool:
    """The page was asked for over HTTPS: directly, or through a TLS-terminating proxy."""
    if scope.get("scheme") == "https":
        return True
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            return value.split(b",")[0].strip().lower() == b"https"
    return False


class TokenGate:
    def __init__(self, app: ASGIApp, token: str, secure_cookie: bool | None = None) -> None:
        self.app = app
        self.token = token.encode()
        self.secure_cookie = secure_cookie  # None: as the request came (scheme or X-Forwarded-Proto)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.token or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given, from_query = presented_token(HTTPConnection(scope))
        if scope["type"] == "websocket":
            if hmac.compare_digest(given.encode(), self.token):
                await self.app(scope, receive, send)
            else:  # closed before it is accepted: the handshake is answered 403
                await send({"type": "websocket.close", "code": 1008, "reason": "a valid token is required"})
            return
        if not hmac.compare_digest(given.encode(), self.token):
            answer = PlainTextResponse("a valid token is required (Authorization: Bearer, or open the page with ?token=...)",
                                       status_code=401, headers={"WWW-Authenticate": 'Bearer realm="hybridcam"'})
            await answer(scope, receive, send)
            return
        if from_query:
            secure = self.secure_cookie if self.secure_cookie is not None else came_over_https(scope)
            send = self._setting_cookie(send, secure)
        await self.app(scope, receive, send)

    def _setting_cookie(self, send: Send, secure: bool) -> Send:
        cookie = f"{COOKIE_NAME}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        return send_with_cookie
