"""Token check in front of every route but /health, WebSockets included (an ASGI middleware, so live streams stay streams).

The token may come as ``Authorization: Bearer <token>``, as the ``hybridcam_token`` cookie,
or once as ``?token=<token>`` in the address: the answer then sets the cookie, so the
page's pictures and event stream carry it without putting it in every URL, and a browser's page
load is redirected to the same address without the token, so it leaves the address bar and history.
A client address with HYBRIDCAM_DASHBOARD_LOGIN_FAILURES wrong tokens in a minute gets 429 until
the minute has passed. The cookie is
``Secure`` when the page came over HTTPS, directly or through a TLS proxy that says so in
``X-Forwarded-Proto`` (or always, with HYBRIDCAM_DASHBOARD_SECURE_COOKIE=true).
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "hybridcam_token"
OPEN_PATHS = frozenset({"/health"})
FAILURE_WINDOW_S = 60.0
TRACKED_CLIENTS = 4096  # failure records kept at most (oldest dropped): a flood of addresses cannot grow memory


class LoginFailures:
    """Failed token checks per client address in a sliding window."""

    def __init__(self, limit: int, window_s: float = FAILURE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.recent: dict[str, deque[float]] = {}
        self.refused = 0

    def _fresh(self, client: str) -> deque[float]:
        times = self.recent.get(client, deque())
        while times and self.clock() - times[0] > self.window_s:
            times.popleft()
        return times

    def locked(self, client: str) -> bool:
        return len(self._fresh(client)) >= self.limit

    def add(self, client: str) -> None:
        times = self._fresh(client)
        times.append(self.clock())
        self.recent.pop(client, None)
        self.recent[client] = times
        while len(self.recent) > TRACKED_CLIENTS:
            self.recent.pop(next(iter(self.recent)))


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
    def __init__(self, app: ASGIApp, token: str, secure_cookie: bool | None = None, failures_per_minute: int = 10) -> None:
        self.app = app
        self.token = token.encode()
        self.secure_cookie = secure_cookie  # None: as the request came (scheme or X-Forwarded-Proto)
        self.failures = LoginFailures(failures_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.token or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        client = connection.client.host if connection.client else ""
        if self.failures.locked(client):
            self.failures.refused += 1
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "too many wrong tokens from this address"})
                return
            await PlainTextResponse("too many wrong tokens from this address: wait a minute", status_code=429,
                                    headers={"Retry-After": str(int(FAILURE_WINDOW_S))})(scope, receive, send)
            return
        given, from_query = presented_token(connection)
        if scope["type"] == "websocket":
            if hmac.compare_digest(given.encode(), self.token):
                await self.app(scope, receive, send)
            else:  # closed before it is accepted: the handshake is answered 403
                self.failures.add(client)
                await send({"type": "websocket.close", "code": 1008, "reason": "a valid token is required"})
            return
        request = Request(scope)
        if not hmac.compare_digest(given.encode(), self.token):
            self.failures.add(client)
            answer = PlainTextResponse("a valid token is required (Authorization: Bearer, or open the page with ?token=...)",
                                       status_code=401, headers={"WWW-Authenticate": 'Bearer realm="hybridcam"'})
            await answer(scope, receive, send)
            return
        if from_query:
            secure = self.secure_cookie if self.secure_cookie is not None else came_over_https(scope)
            send = self._setting_cookie(send, secure)
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                # A page load: the same address without the token, so it leaves the address bar and history.
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                await RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303,
                                       headers={"Cache-Control": "no-store"})(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _setting_cookie(self, send: Send, secure: bool) -> Send:
        cookie = f"{COOKIE_NAME}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        return send_with_cookie
