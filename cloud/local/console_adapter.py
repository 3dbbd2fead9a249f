"""Run the fleet console locally: its page, and its API through the same handler the cloud runs.

The stand-in for the stack's console (docs/fleet-console.md): the page is served here as CloudFront
serves it from the private console bucket, and every request under /api/ becomes an API Gateway HTTP API
(payload v2) event for detector_lambda.console, the function the stack deploys. In the cloud a Cognito
JWT authorizer admits a request before the function runs; here a bearer token does (compared in constant
time): a request without it, or with another, is answered 401 and never reaches the function.

The function's tables and bucket come from --frames-bucket/--frames-table/--fleet-table (or the
FRAMES_BUCKET, FRAMES_TABLE and FLEET_TABLE variables); AWS calls go wherever the AWS SDK points
(AWS_ENDPOINT_URL: the local moto server of `hybridcam cloud local`). The token comes from
--token-file or HYBRIDCAM_CONSOLE_TOKEN; without either a random one is made and printed in the URL's
fragment (never in a query string, which servers log).
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cloud.fleet_console import PAGE_FILES, STATIC_DIR
from shared.errors import ConfigError

TOKEN_ENV = "HYBRIDCAM_CONSOLE_TOKEN"
LOCAL_CALLER = "local-operator"


def content_security_policy(image_origins: list[str]) -> str:
    images = " ".join(["'self'", *image_origins])
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; connect-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def api_event(request: Request, path: str, body: bytes) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event the cloud would hand the function, after its authorizer."""
    query = dict(request.query_params)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/" + path, "rawQueryString": request.url.query,
        "headers": {name.lower(): value for name, value in request.headers.items() if name.lower() != "authorization"},
        "queryStringParameters": query or None,
        "requestContext": {
            "http": {"method": request.method, "path": "/" + path, "protocol": "HTTP/1.1",
                     "sourceIp": request.client.host if request.client else "", "userAgent": request.headers.get("user-agent", "")},
            "authorizer": {"jwt": {"claims": {"sub": LOCAL_CALLER}, "scopes": None}},
            "requestId": uuid.uuid4().hex, "routeKey": "$default", "stage": "$default",
        },
        "body": body.decode("utf-8", "replace") if body else None, "isBase64Encoded": False,
    }


def bearer_token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def create_app(handler: Any, token: str, image_origins: list[str]) -> FastAPI:
    """The adapter: ``handler(event) -> response`` is the console function's ``handle``."""
    if not token:
        raise ConfigError("the fleet console needs a token (--token-file or HYBRIDCAM_CONSOLE_TOKEN)")
    app = FastAPI(title="hybridcam fleet console (local)", docs_url=None, redoc_url=None, openapi_url=None)
    expected = token.encode()
    policy = content_security_policy(image_origins)

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def call_api(path: str, request: Request) -> Response:
        if not hmac.compare_digest(bearer_token(request).encode(), expected):
            return JSONResponse({"message": "Unauthorized"}, status_code=401,
                                headers={"www-authenticate": "Bearer", "cache-control": "no-store"})
        event = api_event(request, path, await request.body())
        answer = await _in_thread(handler, event)
        return Response(content=answer.get("body") or "", status_code=int(answer.get("statusCode", 500)),
                        headers=answer.get("headers") or {})

    @app.get("/config.json")
    async def config() -> JSONResponse:
        return JSONResponse({"api": "api"}, headers={"cache-control": "no-store"})

    @app.get("/")
    async def index() -> Response:
        return page_file("index.html", policy)

    @app.get("/{name}")
    async def static(name: str) -> Response:
        if name not in PAGE_FILES:
            return JSONResponse({"error": "not found"}, status_code=404)
        return page_file(name, policy)

    return app


async def _in_thread(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    answer: dict[str, Any] = await asyncio.to_thread(handler, event)
    return answer


def page_file(name: str, policy: str) -> Response:
    return Response((STATIC_DIR / name).read_bytes(), media_type=PAGE_FILES[name],
                    headers={"content-security-policy": policy, "x-content-type-options": "nosniff",
                             "referrer-policy": "no-referrer", "cache-control": "no-cache"})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def build_app(environ: dict[str, str], token: str) -> FastAPI:
    """The adapter over a console function configured from ``environ`` (FRAMES_BUCKET, FRAMES_TABLE, FLEET_TABLE, ...)."""
    import boto3

    from detector_lambda.console import FleetConsole, load_console_settings

    settings = load_console_settings(environ)
    s3 = boto3.client("s3")
    console = FleetConsole(settings, boto3.client("dynamodb"), s3)
    return create_app(console.handle, token, [origin_of(str(s3.meta.endpoint_url))])


def read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"cannot read --token-file {token_file}: {error.strerror}") from None
    return os.environ.get(TOKEN_ENV, "").strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser.add_argument("--frames-bucket", default=os.environ.get("FRAMES_BUCKET", ""), help="the stack's frames bucket")
    parser.add_argument("--frames-table", default=os.environ.get("FRAMES_TABLE", ""), help="the stack's frames table")
    parser.add_argument("--fleet-table", default=os.environ.get("FLEET_TABLE", ""), help="the stack's fleet (heartbeat) table")
    parser.add_argument("--stale-after", type=float, default=float(os.environ.get("STALE_AFTER_HEARTBEATS", "3")),
                        help="a server is stale after this many of its heartbeat intervals without one (default 3)")
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"file holding the bearer token the API asks for (default: ${TOKEN_ENV}, else a random one)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    token = read_token(args.token_file)
    made_up = not token
    token = token or secrets.token_urlsafe(24)
    environ = {"FRAMES_BUCKET": args.frames_bucket, "FRAMES_TABLE": args.frames_table, "FLEET_TABLE": args.fleet_table,
               "STALE_AFTER_HEARTBEATS": str(args.stale_after)}
    app = build_app(environ, token)
    url = f"http://{args.host}:{args.port}/"
    print(f"fleet console on {url}" + (f"  (open {url}#token={token})" if made_up else "  (sign in with the token)"), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
