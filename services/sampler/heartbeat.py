"""The edge's heartbeats to the fleet console: small summaries of the site's health stream, sent as Kinesis
records beside the frames (the cloud path, so no edge port is ever opened) every HEARTBEAT_INTERVAL_S.

A summary is the newest report of each service instance and each camera among the health stream's last
HEALTH_WINDOW entries (bounded by the schema: 32 services, 64 cameras). A site on one server sends one
heartbeat, named after this host. A site spread over several edge servers (the site file's ``placement``)
sends one per server: its cameras and the edge-infer instances analysing them, and only while something
on it reported in the last FRESH_S, so a server that went quiet stops beating and the console shows it
stale; the site-level services (sampler, compositor, dashboard, events) go in this host's heartbeat.
A heartbeat is sent now or never: when the cloud is unreachable it is counted as unsent and not spooled
(a late heartbeat says nothing).
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from services.sampler.kinesis_sender import OutgoingRecord, partition_key
from shared.schemas import MAX_HEARTBEAT_CAMERAS, MAX_HEARTBEAT_SERVICES, CameraState, Health, Heartbeat, SchemaError, ServiceState, decode
from shared.stream_bus import HEALTH_STREAM, StreamBus

log = logging.getLogger(__name__)

HEALTH_WINDOW = 300
FRESH_S = 10.0  # services report every 2 s: nothing from a server for this long means it went quiet


def server_id(name: str | None = None) -> str:
    """This host's name as a fleet id (letters, digits, '.', '_', '-'; at most 64)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name or socket.gethostname()).strip(".-_")[:64]
    return cleaned or "server"


def summarise(reports: Iterable[Health], site: str, server: str, interval_s: float, now: float) -> Heartbeat:
    """The heartbeat of the newest report per camera and per service instance (``reports`` in any order)."""
    cameras: dict[str, Health] = {}
    services: dict[tuple[str, str], Health] = {}
    for report in reports:
        if report.camera_id:
            if report.camera_id not in cameras or cameras[report.camera_id].ts < report.ts:
                cameras[report.camera_id] = report
            continue
        key = (report.service, report.instance)
        if key not in services or services[key].ts < report.ts:
            services[key] = report
    return Heartbeat(
        site=site, server=server, sent_ts=now, interval_s=interval_s,
        cameras=[CameraState(camera_id=str(c.camera_id)[:128], state=c.state, message=c.message[:200])
                 for c in sorted(cameras.values(), key=lambda r: str(r.camera_id))][:MAX_HEARTBEAT_CAMERAS],
        services=[ServiceState(service=s.service[:128], instance=s.instance[:128], state=s.state, message=s.message[:200],
                               age_s=max(0.0, now - s.ts))
                  for _, s in sorted(services.items())][:MAX_HEARTBEAT_SERVICES],
    )


def cameras_of(report: Health) -> set[str]:
    """The cameras a report is about: its camera, or the cameras an edge-infer instance counts frames of."""
    if report.camera_id:
        return {report.camera_id}
    if report.service == "edge_infer":
        return {key.rpartition(".")[0] for key in report.counters if "." in key}
    return set()


def per_server(reports: list[Health], servers: dict[str, list[str]], own_server: str,
               now: float) -> dict[str, list[Health]]:
    """The reports split by edge server (placement group -> its cameras); the rest go to ``own_server``.
    A server with no report younger than FRESH_S is left out."""
    server_of = {camera: server for server, cameras in servers.items() for camera in cameras}
    split: dict[str, list[Health]] = {}
    for report in reports:
        owners = {server_of[c] for c in cameras_of(report) if c in server_of}
        for server in owners or {own_server}:
            split.setdefault(server, []).append(report)
    return {server: found for server, found in split.items()
            if server == own_server or any(now - r.ts <= FRESH_S for r in found)}


class HeartbeatSource:
    """Makes this site's heartbeat records when they are due: one per edge server of the placement."""

    def __init__(self, bus: StreamBus, site: str, interval_s: float, clock: Callable[[], float],
                 server: str | None = None, servers: dict[str, list[str]] | None = None) -> None:
        """``servers``: edge server -> its cameras, for a site on several; None or one entry = this host only."""
        self.bus = bus
        self.site = site
        self.server = server_id(server)
        self.servers = servers if servers and len(servers) > 1 else {}
        self.interval_s = interval_s
        self.clock = clock
        self.next_at = 0.0

    def due(self) -> bool:
        return self.interval_s > 0 and self.clock() >= self.next_at

    def records(self) -> list[OutgoingRecord]:
        """The heartbeats as Kinesis records (one that cannot be made is logged and left out), and the next ones scheduled."""
        now = self.clock()
        self.next_at = now + self.interval_s
        reports = self._reports()
        split = per_server(reports, self.servers, self.server, now) if self.servers else {self.server: reports}
        records = []
        for server, found in split.items():
            try:
                heartbeat = summarise(found, self.site, server_id(server), self.interval_s, now)
            except ValidationError as error:
                log.warning("no heartbeat: site %r or server %r is not a fleet id (%s)", self.site, server,
                            error.errors()[0]["msg"])
                continue
            records.append(OutgoingRecord(partition_key(self.site, f"heartbeat/{heartbeat.server}"), heartbeat.encode()))
        return records

    def _reports(self) -> list[Health]:
        reports = []
        for entry in self.bus.newest(HEALTH_STREAM, HEALTH_WINDOW):
            try:
                message = decode(entry.payload)
            except SchemaError:
                continue
            if isinstance(message, Health):
                reports.append(message)
        return reports
