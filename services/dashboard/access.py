"""Token check in front of every route but /health (an ASGI middleware, so live streams stay streams).

The token may come as ``Authorization: Bearer <token>``, as the ``hybridcam_token`` cookie,
or once as ``?token=<token>`` in the address: the answer then sets the cookie, so the
page's pictures and event stream carry it without putting it in every URL.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "hybridcam_token"
OPEN_PATHS = frozenset({"/health"})


def presented_token(request: Request) -> tuple[str, bool]:
    """(token, came in the query string)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    if COOKIE_NAME in request.cookies:
        return request.cookies[COOKIE_NAME], False
    return request.query_params.get("token", ""), "token" in request.query_params


class TokenGate:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given, from_query = presented_token(Request(scope))
        if not hmac.compare_digest(given.encode(), self.token):
            answer = PlainTextResponse("a valid token is required (Authorization: Bearer, or open the page with ?token=...)",
                                       status_code=401, headers={"WWW-Authenticate": 'Bearer realm="hybridcam"'})
            await answer(scope, receive, send)
            return
        if from_query:
            send = self._setting_cookie(send, scope.get("scheme") == "https")
        await self.app(scope, receive, send)

    def _setting_cookie(self, send: Send, secure: bool) -> Send:
        cookie = f"{COOKIE_NAME}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        return send_with_cookie
