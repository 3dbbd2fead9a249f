"""The edge's heartbeat to the fleet console: a small summary of the site's health stream, sent as a Kinesis
record beside the frames (the cloud path, so no edge port is ever opened) every HEARTBEAT_INTERVAL_S.

The summary is the newest report of each service instance and each camera among the health stream's last
HEALTH_WINDOW entries (bounded by the schema: 32 services, 64 cameras). A heartbeat is sent now or never:
when the cloud is unreachable it is counted as unsent and not spooled (a late heartbeat says nothing).
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


class HeartbeatSource:
    """Makes this server's heartbeat record when one is due."""

    def __init__(self, bus: StreamBus, site: str, interval_s: float, clock: Callable[[], float],
                 server: str | None = None) -> None:
        self.bus = bus
        self.site = site
        self.server = server_id(server)
        self.interval_s = interval_s
        self.clock = clock
        self.next_at = 0.0

    def due(self) -> bool:
        return self.interval_s > 0 and self.clock() >= self.next_at

    def record(self) -> OutgoingRecord | None:
        """The heartbeat as a Kinesis record (None when it cannot be made: logged), and the next one scheduled."""
        now = self.clock()
        self.next_at = now + self.interval_s
        try:
            heartbeat = summarise(self._reports(), self.site, self.server, self.interval_s, now)
        except ValidationError as error:
            log.warning("no heartbeat: site %r or server %r is not a fleet id (%s)", self.site, self.server,
                        error.errors()[0]["msg"])
            return None
        return OutgoingRecord(partition_key(self.site, f"heartbeat/{self.server}"), heartbeat.encode())

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
