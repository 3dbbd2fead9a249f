"""The fleet console's API ("Frame Fetcher"): an API Gateway HTTP API (payload v2) function over DynamoDB and S3.

Deployed handler: ``detector_lambda.console.lambda_handler``. Routes (GET only; JSON in, JSON out):

- ``/sites``: every site with its servers and their health from the newest heartbeat each sent (fleet.py);
  a server whose heartbeat is older than STALE_AFTER_HEARTBEATS of its own intervals is ``stale``;
- ``/sites/{site}/frames?limit=N``: the site's latest cloud-analysed frames (labels, alerts, a presigned
  link to the picture valid URL_TTL_S);
- ``/sites/{site}/alerts?limit=N``: the latest frames that raised an alert, however old;
- ``/sites/{site}/events?limit=N``: the edge's events uploaded to the cloud (services/events/cloud_upload.py).

Frames come from the frames table's ``site-latest`` index (site, capture_ts), alerts from its sparse
``site-alerts`` index (alert_site, capture_ts: only frames that claimed an alert carry ``alert_site``), events
from its ``site-events`` index (site, start_ts), servers from the fleet table's ``heartbeat`` partition: Queries
only, never a Scan. The API's JWT authorizer (Cognito) admits a request before the function runs; the
function itself also refuses a request that carries no authorizer identity (401), so a route added
without the authorizer fails closed. Errors are JSON ``{"error": ...}`` with 400, 401, 404 or 405.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector_lambda.alerts import alerted_labels
from detector_lambda.fleet import HEARTBEAT_KIND
from detector_lambda.logs import logger
from detector_lambda.settings import first_error, from_environ
from detector_lambda.storage import from_dynamo
from shared.errors import ConfigError
from shared.schemas import SITE_ID_PATTERN, utc_iso

SITE_INDEX = "site-latest"
EVENTS_INDEX = "site-events"
ALERTS_INDEX = "site-alerts"
MAX_SERVERS = 2000
STATE_RANK = {"ok": 0, "starting": 1, "degraded": 2, "reconnecting": 3, "stale": 4, "failed": 5, "stopped": 6}
_SITE = re.compile(SITE_ID_PATTERN)
_ROUTE = re.compile(r"^/sites(?:/(?P<site>[^/]+)/(?P<part>frames|alerts|events))?/?$")
JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


class ConsoleSettings(BaseSettings):
    """The console function's environment (set by the template; the local adapter passes the same names)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    frames_bucket: str = Field(min_length=1)
    frames_table: str = Field(min_length=1)
    fleet_table: str = Field(min_length=1)
    stale_after_heartbeats: float = Field(3.0, ge=1.0, le=100.0)
    url_ttl_s: int = Field(300, ge=10, le=3600)
    default_limit: int = Field(12, ge=1, le=100)
    max_limit: int = Field(50, ge=1, le=100)


def load_console_settings(environ: Mapping[str, str] | None = None) -> ConsoleSettings:
    try:
        return from_environ(ConsoleSettings, environ)
    except ValidationError as error:
        name, first = first_error(error)
        raise ConfigError(f"console setting {name}: {first['msg']} (the fleet console needs FRAMES_BUCKET, "
                          "FRAMES_TABLE, FLEET_TABLE).") from None


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def response(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(JSON_HEADERS), "body": json.dumps(body, separators=(",", ":"))}


def caller_of(event: Mapping[str, Any]) -> str | None:
    """Who the API's authorizer admitted (JWT ``sub`` or IAM user ARN); None when no authorizer ran."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if claims.get("sub"):
        return str(claims["sub"])
    iam = authorizer.get("iam") or {}
    return str(iam["userArn"]) if iam.get("userArn") else None


def server_state(item: Mapping[str, Any], now: float, stale_after_heartbeats: float) -> str:
    """The worst state the heartbeat reports, or ``stale`` when it is too old to say anything."""
    interval = float(item.get("interval_s") or 30.0)
    if now - float(item.get("sent_ts") or 0.0) > stale_after_heartbeats * interval:
        return "stale"
    states = [str(part.get("state", "ok")) for key in ("services", "cameras") for part in item.get(key) or []]
    return worst(states)


def worst(states: list[str]) -> str:
    return max(states, key=lambda state: STATE_RANK.get(state, 2), default="ok")


@dataclass
class FleetConsole:
    settings: ConsoleSettings
    dynamodb: Any
    s3: Any
    clock: Callable[[], float] = time.time

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        try:
            if caller_of(event) is None:
                raise HttpError(401, "not authenticated")
            method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
            if method != "GET":
                raise HttpError(405, "only GET is served")
            match = _ROUTE.match(str(event.get("rawPath") or ""))
            if match is None:
                raise HttpError(404, "no such route")
            site, part = match.group("site"), match.group("part")
            if site is None:
                return response(200, {"sites": self.sites()})
            if not _SITE.match(site):
                raise HttpError(400, "site ids are 1-64 letters, digits, '.', '_' or '-'")
            limit = self._limit(event.get("queryStringParameters") or {})
            if part == "frames":
                return response(200, {"site": site, "frames": self.frames(site, limit)})
            if part == "alerts":
                return response(200, {"site": site, "alerts": self.alerts(site, limit)})
            return response(200, {"site": site, "events": self.events(site, limit)})
        except HttpError as error:
            return response(error.status, {"error": error.message})

    def _limit(self, query: Mapping[str, Any]) -> int:
        raw = query.get("limit")
        if raw is None or raw == "":
            return self.settings.default_limit
        if not str(raw).isdigit() or not 1 <= int(raw) <= self.settings.max_limit:
            raise HttpError(400, f"limit must be a whole number from 1 to {self.settings.max_limit}")
        return int(raw)

    # -- the queries ---------------------------------------------------------------------------
    def sites(self) -> list[dict[str, Any]]:
        now = self.clock()
        servers: dict[str, list[dict[str, Any]]] = {}
        for item in self._query(self.settings.fleet_table, MAX_SERVERS, KeyConditionExpression="#kind = :kind",
                                ExpressionAttributeNames={"#kind": "kind"},
                                ExpressionAttributeValues={":kind": {"S": HEARTBEAT_KIND}}):
            sent_ts = float(item.get("sent_ts") or 0.0)
            servers.setdefault(str(item["site"]), []).append({
                "server": item["server"], "state": server_state(item, now, self.settings.stale_after_heartbeats),
                "sent_time": utc_iso(sent_ts), "age_s": round(max(0.0, now - sent_ts), 1),
                "interval_s": item.get("interval_s"), "cameras": item.get("cameras") or [],
                "services": item.get("services") or [],
            })
        return [{"site": site, "state": worst([s["state"] for s in members]),
                 "servers": sorted(members, key=lambda s: str(s["server"]))}
                for site, members in sorted(servers.items())]

    def frames(self, site: str, limit: int) -> list[dict[str, Any]]:
        items = self._query(self.settings.frames_table, limit, IndexName=SITE_INDEX, ScanIndexForward=False,
                            KeyConditionExpression="#site = :site", ExpressionAttributeNames={"#site": "site"},
                            ExpressionAttributeValues={":site": {"S": site}})
        return [self._frame(item) for item in items]

    def alerts(self, site: str, limit: int) -> list[dict[str, Any]]:
        items = self._query(self.settings.frames_table, limit, IndexName=ALERTS_INDEX, ScanIndexForward=False,
                            KeyConditionExpression="#site = :site", ExpressionAttributeNames={"#site": "alert_site"},
                            ExpressionAttributeValues={":site": {"S": site}})
        return [{**self._frame(item), "alerted": alerted_labels([str(a) for a in item.get("alerts") or []])}
                for item in items]

    def events(self, site: str, limit: int) -> list[dict[str, Any]]:
        items = self._query(self.settings.frames_table, limit, IndexName=EVENTS_INDEX, ScanIndexForward=False,
                            KeyConditionExpression="#site = :site", ExpressionAttributeNames={"#site": "site"},
                            ExpressionAttributeValues={":site": {"S": site}})
        return [{
            "event_id": str(item.get("pk", "")).removeprefix("event#"), "camera_id": item.get("camera_id"),
            "start_time": utc_iso(float(item.get("start_ts") or 0.0)), "rule": item.get("rule"),
            "zone": item.get("zone"), "severity": item.get("severity"), "labels": item.get("labels") or [],
            "snapshot_url": self._link(str(item["snapshot_key"])) if item.get("snapshot_key") else None,
        } for item in items]

    def _frame(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "frame_id": item.get("frame_id"), "camera_id": item.get("camera_id"),
            "capture_time": item.get("capture_time"), "width": item.get("width"), "height": item.get("height"),
            "model": item.get("model"), "labels": item.get("labels") or [],
            "alerted": alerted_labels([str(a) for a in item.get("alerts") or []]),
            "image_url": self._link(str(item["s3_key"])) if item.get("s3_key") else None,
        }

    def _link(self, key: str) -> str:
        return str(self.s3.generate_presigned_url("get_object", Params={"Bucket": self.settings.frames_bucket, "Key": key},
                                                  ExpiresIn=self.settings.url_ttl_s))

    def _query(self, table: str, limit: int, **request: Any) -> list[dict[str, Any]]:
        """Items of a Query, page by page, until ``limit`` were read."""
        found: list[dict[str, Any]] = []
        read, cap = 0, limit
        start: dict[str, Any] | None = None
        while len(found) < limit and read < cap:
            page = self.dynamodb.query(TableName=table, Limit=min(100, cap - read), **request,
                                       **({"ExclusiveStartKey": start} if start else {}))
            read += int(page.get("ScannedCount", len(page.get("Items", []))))
            found.extend(from_dynamo(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return found[:limit]


class ConsoleFunction:
    """The function as one warm container holds it: settings and clients made at the first call."""

    def __init__(self, settings: ConsoleSettings | None = None) -> None:
        self._settings = settings
        self._console: FleetConsole | None = None
        self._entry = logger.inject_lambda_context(self.handle, clear_state=True)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._entry(event, context)

    @property
    def console(self) -> FleetConsole:
        if self._console is None:
            settings = self._settings or load_console_settings()
            self._console = FleetConsole(settings, boto3.client("dynamodb"), boto3.client("s3"))
        return self._console

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        with logger.append_context_keys(route=str(event.get("rawPath", ""))[:200]):
            try:
                answer = self.console.handle(event)
            except Exception:
                logger.exception("console request failed")
                return response(500, {"error": "internal error"})
        if answer["statusCode"] >= 400:
            logger.info("console request refused: %d %s", answer["statusCode"], answer["body"][:200])
        return answer


_function = ConsoleFunction()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The deployed entry point (one ConsoleFunction per warm container)."""
    return _function(event, context)
