"""Live view over WebRTC (aiortc): signalling on the dashboard's HTTP API, behind its token.

The page posts an SDP offer to ``POST /api/webrtc/offer`` (``{"sdp", "type", "source"}``,
source ``program`` or ``camera:<id>``) and gets the answer and a viewer id; ``POST
/api/webrtc/<id>/close`` (also sent by the page as it goes away) ends the viewer at once,
and a viewer whose browser vanishes is ended when its connection fails.

Admission and release (a hostile or broken client must not hold senders): an offer that cannot be
applied, whatever aiortc raises, releases its viewer and answers 400; a viewer not connected within
HYBRIDCAM_DASHBOARD_WEBRTC_CONNECT_TIMEOUT_S (ICE that never completes, a tab killed before its close
beacon) is released; one client address holds at most HYBRIDCAM_DASHBOARD_WEBRTC_MAX_VIEWERS_PER_CLIENT
viewers; a relay or encoder that dies while viewers remain is started again. ``GET /api/webrtc``
says whether the live view is configured, the ICE servers the page should use and how many
senders are open. Every viewer gets its own peer connection and sender; the encoded video
comes from a source shared by all viewers of it (services/dashboard/live_video.py).

No STUN/TURN is used unless configured: host candidates reach viewers on loopback and the LAN.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from fastapi import FastAPI, HTTPException, Request
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, Field

from services.dashboard.live_video import CameraEncoder, ProgramRelay, UnitSource
from services.dashboard.settings import DashboardSettings
from shared.h264_stream import CLOCK, AccessUnit

log = logging.getLogger(__name__)
QUEUED_UNITS = 8  # about half a second at the program rate: more means the viewer is behind; skip to a key frame
STALE_S = 0.25  # a unit that waited this long is dropped, with the rest of its group, when a newer key frame waits
SWEEP_EVERY_S = 1.0  # how often unconnected viewers and dead sources are looked for
H264_ONLY = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/H264", "video/rtx")]


class Offer(BaseModel):
    sdp: str = Field(max_length=64_000)
    type: str = Field(pattern="^offer$")
    source: str = Field("program", max_length=200)


class EncodedVideoTrack(MediaStreamTrack):
    """Hands pre-encoded H.264 to aiortc's sender (it packetizes av.Packets without re-encoding).

    Starts at a key frame. Under load it degrades by dropping before sending, never by queueing: a viewer
    more than QUEUED_UNITS behind skips to the next key frame, and a group whose pictures waited STALE_S
    is dropped when a newer key frame is already here. Each unit is stamped when it is sent, so the RTP
    clock follows the sending pace and a busy sender does not look like network jitter to the browser
    (whose jitter buffer would then hold every picture longer).
    """

    kind = "video"

    def __init__(self, source: UnitSource) -> None:
        super().__init__()
        self.source = source
        self.queue: deque[tuple[float, AccessUnit]] = deque()
        self.ready = asyncio.Event()
        self.waiting_for_keyframe = True
        self.dropped = 0
        self._stamp = 0
        source.subscribe(self.offer)

    def offer(self, unit: AccessUnit) -> None:
        if self.waiting_for_keyframe and not unit.is_keyframe:
            return
        if len(self.queue) >= QUEUED_UNITS:
            self.dropped += len(self.queue)
            self.queue.clear()
            self.waiting_for_keyframe = not unit.is_keyframe
            if self.waiting_for_keyframe:
                return
        self.waiting_for_keyframe = False
        self.queue.append((time.monotonic(), unit))
        self.ready.set()

    def _next_unit(self) -> AccessUnit:
        arrived, unit = self.queue.popleft()
        if time.monotonic() - arrived > STALE_S and any(u.is_keyframe for _, u in self.queue):
            while not self.queue[0][1].is_keyframe:
                self.queue.popleft()
                self.dropped += 1
            self.dropped += 1
            _, unit = self.queue.popleft()
        return unit

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self.queue:
                break
            self.ready.clear()
            await self.ready.wait()
        unit = self._next_unit()
        self._stamp = max(self._stamp + 1, int(time.monotonic() / CLOCK))
        packet = av.Packet(unit.data)
        packet.pts = packet.dts = self._stamp
        packet.time_base = CLOCK
        return packet

    def stop(self) -> None:
        self.source.unsubscribe(self.offer)
        super().stop()
        self.ready.set()


@dataclass
class Viewer:
    id: str
    source: str
    connection: RTCPeerConnection
    track: EncodedVideoTrack
    client: str = ""
    opened: float = field(default_factory=time.monotonic)

    @property
    def connected(self) -> bool:
        return self.connection.connectionState == "connected"


@dataclass
class LiveViews:
    settings: DashboardSettings
    cameras: list[str]
    registry: CollectorRegistry | None = None
    viewers: dict[str, Viewer] = field(default_factory=dict)
    sources: dict[str, UnitSource] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ice_servers = _ice_servers(self.settings)
        self._sweeper: asyncio.Task[None] | None = None
        Gauge("hybridcam_webrtc_senders", "open WebRTC senders (one per viewer)", registry=self.registry) \
            .set_function(lambda: len(self.viewers))
        Gauge("hybridcam_webrtc_sources", "live video sources running (program relay, camera encoders)",
              registry=self.registry).set_function(lambda: sum(s.running for s in self.sources.values()))

    @property
    def configured(self) -> bool:
        return bool(self.settings.dashboard_program_h264_url)

    def describe(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "problem": "" if self.configured else "no encoded program configured (HYBRIDCAM_DASHBOARD_PROGRAM_H264_URL)",
            "ice_servers": [{"urls": s.urls, **({"username": s.username, "credential": s.credential} if s.username else {})}
                            for s in self.ice_servers],
            "senders": len(self.viewers),
            "sources": {name: {"running": s.running, "subscribers": len(s.subscribers), **s.counters}
                        for name, s in self.sources.items()},
            "sources_running": sum(s.running for s in self.sources.values()),
            "cameras": self.cameras,
            "viewer_counters": dict(self.counters),
        }

    def source(self, name: str) -> UnitSource:
        if name not in self.sources:
            if name == "program":
                if not self.configured:
                    raise HTTPException(404, "no encoded program configured (HYBRIDCAM_DASHBOARD_PROGRAM_H264_URL)")
                self.sources[name] = ProgramRelay(self.settings.dashboard_program_h264_url)
            elif name.startswith("camera:") and name[7:] in self.cameras:
                self.sources[name] = CameraEncoder(name[7:], self.settings.redis_url, self.settings.dashboard_webrtc_camera_width)
            else:
                raise HTTPException(404, f"no live source {name!r}: choose program or camera:<id> of {', '.join(self.cameras)}")
        return self.sources[name]

    async def answer(self, offer: Offer, client: str = "") -> dict[str, str]:
        self._admit(client)
        source = self.source(offer.source)
        connection = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        track = EncodedVideoTrack(source)
        viewer = Viewer(secrets.token_urlsafe(12), offer.source, connection, track, client)
        self.viewers[viewer.id] = viewer
        self._keep_sweeping()

        @connection.on("connectionstatechange")
        async def on_state() -> None:
            log.info("viewer %s (%s): %s", viewer.id, viewer.source, connection.connectionState)
            if connection.connectionState in ("failed", "closed"):
                await self.release(viewer.id)

        try:
            # The codec is chosen when the offer is applied: the transceiver and its H.264-only preference come first.
            transceiver = connection.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(H264_ONLY)
            await connection.setRemoteDescription(RTCSessionDescription(offer.sdp, offer.type))
            await connection.setLocalDescription(await connection.createAnswer())
        except Exception as error:  # aiortc's SDP parser raises AssertionError, IndexError... on a malformed offer
            self.counters["bad_offers"] += 1
            await self.release(viewer.id)
            raise HTTPException(400, f"offer not usable: {type(error).__name__} {error}".strip()) from None
        description = connection.localDescription
        log.info("viewer %s watches %s (%d open)", viewer.id, viewer.source, len(self.viewers))
        return {"id": viewer.id, "sdp": description.sdp, "type": description.type}

    def _admit(self, client: str) -> None:
        if len(self.viewers) >= self.settings.dashboard_webrtc_max_viewers:
            self.counters["refused_full"] += 1
            raise HTTPException(503, f"{len(self.viewers)} viewers already (HYBRIDCAM_DASHBOARD_WEBRTC_MAX_VIEWERS)")
        per_client = self.settings.dashboard_webrtc_max_viewers_per_client
        if client and sum(v.client == client for v in self.viewers.values()) >= per_client:
            self.counters["refused_client"] += 1
            raise HTTPException(429, f"{per_client} viewers already from {client} "
                                     "(HYBRIDCAM_DASHBOARD_WEBRTC_MAX_VIEWERS_PER_CLIENT)")

    def _keep_sweeping(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="webrtc-sweeper")

    async def _sweep_forever(self) -> None:
        while self.viewers:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive one bad viewer
                log.exception("webrtc sweep failed")

    async def sweep(self, now: float | None = None) -> None:
        """Release viewers that did not connect in time; start again a source that died under its viewers."""
        now = time.monotonic() if now is None else now
        limit = self.settings.dashboard_webrtc_connect_timeout_s
        for viewer in list(self.viewers.values()):
            if not viewer.connected and now - viewer.opened > limit:
                self.counters["unconnected_released"] += 1
                log.info("viewer %s (%s) not connected after %.0f s: released", viewer.id, viewer.client, limit)
                await self.release(viewer.id)
        for source in self.sources.values():
            if source.subscribers and not source.running:
                self.counters["sources_restarted"] += 1
                log.warning("live source %s stopped with %d viewers: starting it again", source.name, len(source.subscribers))
                source.restart()

    async def release(self, viewer_id: str) -> bool:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        viewer.track.stop()
        await viewer.connection.close()
        log.info("viewer %s left (%d open)", viewer_id, len(self.viewers))
        return True

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for viewer_id in list(self.viewers):
            await self.release(viewer_id)


def _ice_servers(settings: DashboardSettings) -> list[RTCIceServer]:
    urls = [u.strip() for u in settings.dashboard_webrtc_ice_servers.split(",") if u.strip()]
    username = settings.dashboard_webrtc_turn_username or None
    credential = settings.dashboard_webrtc_turn_credential.get_secret_value() if settings.dashboard_webrtc_turn_credential else None
    return [RTCIceServer(url, username if url.startswith("turn") else None, credential if url.startswith("turn") else None)
            for url in urls]


def add_webrtc_routes(app: FastAPI, views: LiveViews) -> None:
    @app.get("/api/webrtc")
    async def webrtc_state() -> dict[str, Any]:
        return views.describe()

    @app.post("/api/webrtc/offer")
    async def webrtc_offer(offer: Offer, request: Request) -> dict[str, str]:
        return await views.answer(offer, request.client.host if request.client else "")

    @app.post("/api/webrtc/{viewer_id}/close")
    async def webrtc_close(viewer_id: str) -> dict[str, Any]:
        return {"released": await views.release(viewer_id), "senders": len(views.viewers)}
