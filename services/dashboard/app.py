"""The dashboard's HTTP routes (FastAPI). The page itself is static: static/index.html and app.js.

Routes: ``/`` the page, ``/events`` the live event stream (server-sent events), ``/review`` and
``/events/<id>`` the review page with its ``/api/events`` (services/dashboard/event_review.py), ``/api/state``,
``/api/cameras/{camera}/snapshot.jpg``, ``/api/cloud-frames``, ``/program.mjpg`` (the compositor's
MJPEG preview, relayed so the page has one origin and one token), ``/metrics`` and ``/health``; the
live view's routes are in webrtc.py and live_socket.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.dashboard.access import TokenGate
from services.dashboard.camera_snapshots import CameraSnapshots
from services.dashboard.cloud_frames import CloudFrameBrowser, CloudFramesError
from services.dashboard.event_review import EventArchive, add_event_routes
from services.dashboard.live_feed import LiveFeed
from services.dashboard.live_socket import LiveSockets, add_live_socket_routes
from services.dashboard.request_guard import RequestGuard
from services.dashboard.security_headers import SecurityHeaders, content_security_policy, origin_of
from services.dashboard.settings import DashboardSettings
from services.dashboard.site_state import SiteState
from services.dashboard.webrtc import LiveViews, add_webrtc_routes
from shared.metrics import StreamCollector, service_registry
from shared.schemas import Health, HealthState
from shared.site_config import SiteConfig
from shared.stream_bus import ALERTS_STREAM, DEADLETTER_STREAM, DETECTIONS_STREAM, HEALTH_STREAM, frames_stream

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0


@dataclass
class Dashboard:
    """Everything the routes share."""

    settings: DashboardSettings
    site: SiteConfig
    state: SiteState
    feed: LiveFeed
    snapshots: CameraSnapshots
    cloud: CloudFrameBrowser | None
    cloud_problem: str = ""
    program_streams: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def health(self) -> Health:
        state: HealthState = "ok" if self.state.redis_ok else "degraded"
        message = "" if self.state.redis_ok else "redis unreachable"
        return Health(service="dashboard", instance=f"{self.settings.dashboard_host}:{self.settings.dashboard_port}",
                      state=state, message=message,
                      counters={"pages": float(len(self.feed.subscribers)), "program_streams": float(self.program_streams),
                                **{f"refused_{k}": float(v) for k, v in self.refused.items()},
                                **{k: float(v) for k, v in dict(self.feed.counters).items()}})


def create_app(settings: DashboardSettings, site: SiteConfig, cloud: CloudFrameBrowser | None = None) -> FastAPI:
    cameras = site.resolved()
    servers = {camera: group.group for group in site.placement_groups() for camera in group.cameras}
    state = SiteState(site.site, cameras, settings.dashboard_alerts_kept, settings.dashboard_price_set, servers,
                      settings.dashboard_camera_silent_s)
    sync_redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    streams = [frames_stream(c.id) for c in cameras] + [DETECTIONS_STREAM, HEALTH_STREAM, ALERTS_STREAM, DEADLETTER_STREAM]
    holder: dict[str, Dashboard] = {}
    registry = service_registry(lambda: [*state.health_reports(), holder["dashboard"].health()],
                                StreamCollector(sync_redis, lambda: streams))
    feed = LiveFeed(settings.redis_url, state, registry)
    dashboard = holder["dashboard"] = Dashboard(
        settings, site, state, feed, CameraSnapshots(sync_redis, settings.dashboard_snapshot_width), cloud)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="live-feed")
        watch = asyncio.create_task(feed.watch_silent_cameras(), name="silent-cameras")
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None))
        if cloud is not None:
            await asyncio.to_thread(_check_cloud, dashboard)
        try:
            yield
        finally:
            task.cancel()
            watch.cancel()
            await live_views.close()
            await app.state.http.aclose()
            await feed.close()
            dashboard.snapshots.close()
            archive.close()
            sync_redis.close()

    app = FastAPI(title="hybridcam dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.dashboard = dashboard
    _add_routes(app, dashboard, registry)
    archive = EventArchive(settings.dashboard_events_dir)
    add_event_routes(app, archive, site, STATIC_DIR / "review.html")
    live_views = LiveViews(settings, [c.id for c in cameras], registry)
    add_webrtc_routes(app, live_views)
    add_live_socket_routes(app, LiveSockets(settings, live_views, registry))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.token:
        app.add_middleware(TokenGate, token=settings.token, secure_cookie=settings.dashboard_secure_cookie,
                           failures_per_minute=settings.dashboard_login_failures)
    app.add_middleware(RequestGuard, check_host=not settings.token, allowed_hosts=settings.dashboard_allowed_hosts.split(","))
    app.add_middleware(SecurityHeaders, policy=content_security_policy(cloud_image_origins(cloud)))
    return app


def cloud_image_origins(cloud: CloudFrameBrowser | None) -> list[str]:
    """Where the presigned URLs of cloud pictures point (the S3 endpoint, and AWS's own hosts)."""
    if cloud is None:
        return []
    origins = ["https://*.amazonaws.com"]
    endpoint = origin_of(getattr(getattr(cloud.s3, "meta", None), "endpoint_url", None))
    if endpoint:
        origins.append(endpoint)
    return origins


def _check_cloud(dashboard: Dashboard) -> None:
    assert dashboard.cloud is not None
    try:
        dashboard.cloud.check()
        log.info("cloud frames from table %s, pictures from bucket %s", dashboard.cloud.table, dashboard.cloud.bucket)
    except CloudFramesError as error:
        dashboard.cloud_problem = str(error)
        log.error("cloud frames panel: %s", error)


def _add_routes(app: FastAPI, dashboard: Dashboard, registry: Any) -> None:
    settings = dashboard.settings

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    # Routes that read the live state are async: they run on the loop that updates it.
    @app.get("/health")
    async def health() -> JSONResponse:
        report = dashboard.health()
        return JSONResponse({"service": "dashboard", **report.model_dump()})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/state")
    async def api_state() -> dict[str, Any]:
        return dashboard.state.snapshot() | {"program_configured": bool(settings.dashboard_program_url),
                                             "cloud_configured": dashboard.cloud is not None,
                                             "tile_fps": settings.dashboard_tile_fps}

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        if len(dashboard.feed.subscribers) >= settings.dashboard_max_event_streams:
            dashboard.refused["events"] += 1
            raise HTTPException(503, f"{len(dashboard.feed.subscribers)} live pages open already "
                                     "(HYBRIDCAM_DASHBOARD_MAX_EVENT_STREAMS)", headers={"Retry-After": "10"})
        return StreamingResponse(_event_stream(dashboard.feed), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/cameras/{camera_id}/snapshot.jpg")
    def snapshot(camera_id: str, seq: int | None = Query(None, ge=0)) -> Response:
        if camera_id not in dashboard.state.cameras:
            raise HTTPException(404, f"no camera {camera_id!r} on site {dashboard.site.site!r}")
        try:
            picture = dashboard.snapshots.picture(camera_id, seq)
        except (redis.ConnectionError, redis.TimeoutError):
            raise HTTPException(503, "redis unreachable") from None
        if picture is None:
            raise HTTPException(404, f"camera {camera_id!r} has no frame on this host yet")
        return Response(picture.jpeg, media_type="image/jpeg", headers={
            "Cache-Control": "no-store", "X-Frame-Seq": str(picture.seq), "X-Frame-Exact": str(picture.exact).lower()})

    @app.get("/api/cloud-frames")
    def cloud_frames(limit: int = Query(settings.dashboard_cloud_frames, ge=1, le=100)) -> dict[str, Any]:
        if dashboard.cloud is None:
            return {"configured": False, "frames": [],
                    "problem": "no cloud path configured (HYBRIDCAM_DASHBOARD_FRAMES_TABLE and _FRAMES_BUCKET)"}
        try:
            frames = dashboard.cloud.latest(list(dashboard.state.cameras), limit, settings.dashboard_cloud_window_h * 3600)
        except CloudFramesError as error:
            log.warning("cloud frames: %s", error)
            return {"configured": True, "frames": [], "problem": str(error)}
        dashboard.cloud_problem = ""
        return {"configured": True, "frames": [f.as_dict() for f in frames], "problem": "", "as_of": time.time()}

    @app.get("/program.mjpg")
    async def program() -> StreamingResponse:
        url = settings.dashboard_program_url
        if not url:
            raise HTTPException(404, "no program output configured (HYBRIDCAM_DASHBOARD_PROGRAM_URL)")
        if dashboard.program_streams >= settings.dashboard_max_program_streams:
            dashboard.refused["program"] += 1
            raise HTTPException(503, f"{dashboard.program_streams} program streams open already "
                                     "(HYBRIDCAM_DASHBOARD_MAX_PROGRAM_STREAMS)", headers={"Retry-After": "10"})
        client: httpx.AsyncClient = app.state.http
        try:
            upstream = await client.send(client.build_request("GET", url), stream=True)
        except httpx.HTTPError as error:
            raise HTTPException(502, f"program output at {url} is unreachable ({type(error).__name__})") from None
        if upstream.status_code != 200:
            await upstream.aclose()
            raise HTTPException(502, f"program output at {url} answered {upstream.status_code}")
        dashboard.program_streams += 1

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                dashboard.program_streams -= 1
                await upstream.aclose()

        return StreamingResponse(relay(), media_type=upstream.headers.get("content-type", "image/jpeg"),
                                 headers={"Cache-Control": "no-store"})


async def _event_stream(feed: LiveFeed) -> AsyncIterator[str]:
    with feed.subscription() as queue:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            yield f"event: {event['type']}\ndata: {json.dumps(event['data'], default=str)}\n\n"
