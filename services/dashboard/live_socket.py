"""Live view over a WebSocket: the compositor's own H.264, decoded in the page with WebCodecs.

``GET /api/live/socket?source=program`` (a WebSocket, behind the dashboard's token, same origin
only) sends one binary message per access unit, as a shared/h264_stream.py record: a 16-byte
header (key-frame flag, pts in 1/90000 s) and the Annex-B unit (SPS/PPS in front of key frames).
The encoded video comes from the same shared sources as the WebRTC view (services/dashboard/live_video.py):
the program relay (no second encode) or a camera's encoder. There is no jitter buffer anywhere: the
page decodes each unit as it arrives and draws the newest picture. A viewer whose socket falls behind
loses whole groups of pictures up to the next key frame here, before they are sent (counted), and
never slows the other viewers.

``GET /api/live`` tells the page which transports to try, best first (HYBRIDCAM_DASHBOARD_LIVE_TRANSPORTS).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from services.dashboard.settings import DashboardSettings
from services.dashboard.webrtc import LiveViews
from shared.h264_stream import AccessUnit, encode_record

log = logging.getLogger(__name__)
QUEUED_UNITS = 8  # about half a second at 15 fps: more means the socket is behind, so skip to a key frame
POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013


class SocketViewer:
    """One page's queue of access units; when it is full the queue is emptied and refilled from the next key frame."""

    def __init__(self, counters: Counter[str]) -> None:
        self.queue: asyncio.Queue[AccessUnit] = asyncio.Queue(maxsize=QUEUED_UNITS)
        self.waiting_for_keyframe = True
        self.counters = counters

    def offer(self, unit: AccessUnit) -> None:
        if self.queue.full():
            self.counters["dropped"] += self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.waiting_for_keyframe = True
        if self.waiting_for_keyframe and not unit.is_keyframe:
            self.counters["dropped"] += 1
            return
        self.waiting_for_keyframe = False
        self.queue.put_nowait(unit)


class LiveSockets:
    def __init__(self, settings: DashboardSettings, views: LiveViews, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.views = views
        self.viewers: set[SocketViewer] = set()
        self.counters: Counter[str] = Counter()
        Gauge("hybridcam_live_socket_viewers", "open WebSocket live viewers", registry=registry).set_function(lambda: len(self.viewers))
        self._dropped = PromCounter("hybridcam_live_socket_dropped_units", "access units not sent to a WebSocket viewer that fell behind",
                                    registry=registry)

    @property
    def transports(self) -> list[str]:
        return [t.strip() for t in self.settings.dashboard_live_transports.split(",") if t.strip()]

    def describe(self) -> dict[str, Any]:
        return {"transports": self.transports, "configured": self.views.configured,
                "problem": "" if self.views.configured else "no encoded program configured (HYBRIDCAM_DASHBOARD_PROGRAM_H264_URL)",
                "cameras": self.views.cameras, "socket_viewers": len(self.viewers), "socket_counters": dict(self.counters)}

    async def serve(self, websocket: WebSocket, source_name: str) -> None:
        if not _same_origin(websocket):
            await websocket.close(POLICY_VIOLATION, "the live view is served to the dashboard's own page only")
            return
        if len(self.viewers) >= self.settings.dashboard_live_socket_max_viewers:
            await websocket.close(TRY_AGAIN_LATER, f"{len(self.viewers)} viewers already (HYBRIDCAM_DASHBOARD_LIVE_SOCKET_MAX_VIEWERS)")
            return
        try:
            source = self.views.source(source_name)
        except HTTPException as error:
            await websocket.close(POLICY_VIOLATION, str(error.detail)[:120])
            return
        await websocket.accept()
        viewer = SocketViewer(self.counters)
        self.viewers.add(viewer)
        source.subscribe(viewer.offer)
        log.info("socket viewer watches %s (%d open)", source_name, len(self.viewers))
        dropped_before = self.counters["dropped"]
        sending = asyncio.create_task(self._send(websocket, viewer), name="live-socket-send")
        listening = asyncio.create_task(self._until_closed(websocket), name="live-socket-listen")
        try:
            await asyncio.wait({sending, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, listening):
                task.cancel()
            source.unsubscribe(viewer.offer)
            self.viewers.discard(viewer)
            self._dropped.inc(self.counters["dropped"] - dropped_before)
            log.info("socket viewer of %s left (%d open)", source_name, len(self.viewers))

    async def _send(self, websocket: WebSocket, viewer: SocketViewer) -> None:
        try:
            while True:
                unit = await viewer.queue.get()
                await websocket.send_bytes(encode_record(unit))
                self.counters["sent"] += 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    async def _until_closed(self, websocket: WebSocket) -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError):
            return


def _same_origin(websocket: WebSocket) -> bool:
    """Browsers send Origin with every WebSocket; one from another site must not ride on the token cookie."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (a bearer-token client)
    host = websocket.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def add_live_socket_routes(app: FastAPI, sockets: LiveSockets) -> None:
    @app.get("/api/live")
    async def live_state() -> dict[str, Any]:
        return sockets.describe()

    @app.websocket("/api/live/socket")
    async def live_socket(websocket: WebSocket, source: str = "program") -> None:
        await sockets.serve(websocket, source[:200])
