"""What the page shows, kept up to date from the stream messages, and the events that change it.

Pure bookkeeping: no Redis, no HTTP. :meth:`SiteState.apply` takes one decoded message and
returns the browser events it causes (or none); :meth:`SiteState.snapshot` is what a page
that just connected gets first.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cost_model.running_cost import running_cost
from services.dashboard.watch_list import hit_views
from shared.cloud_track_labels import CloudTrackLabels
from shared.sampling_summary import summarize
from shared.schemas import Alert, Detection, DetectionSet, Envelope, FaceMatches, Health
from shared.site_config import ResolvedCamera

Event = dict[str, Any]


def detection_view(message: DetectionSet, track_labels: CloudTrackLabels | None = None) -> dict[str, Any]:
    """A detection set for the page; an edge box whose track the cloud labelled carries that label (cloud_label)."""
    def box_view(d: Detection) -> dict[str, Any]:
        view: dict[str, Any] = {"label": d.label, "score": round(d.score, 3), "box": [round(v, 1) for v in d.box],
                                **({"actions": list(d.actions)} if d.actions else {})}
        cloud = track_labels.text(message.camera_id, d.track_id) if track_labels and message.source == "edge" else None
        return view | ({"track_id": d.track_id, "cloud_label": cloud} if cloud else {})

    return {
        "camera_id": message.camera_id, "source": message.source, "seq": message.seq, "frame_id": message.frame_id,
        "capture_ts": message.capture_ts, "width": message.width, "height": message.height, "model": message.model,
        "provider": message.provider, "latency_ms": round(message.latency_ms, 1),
        "boxes": [box_view(d) for d in message.detections],
    }


def alert_view(alert: Alert) -> dict[str, Any]:
    return alert.model_dump(mode="json")


@dataclass
class CameraState:
    camera_id: str
    role: str
    width: int
    height: int
    server: str = "edge"  # the placement group (edge server) that captures it
    capture: dict[str, Any] = field(default_factory=lambda: {"state": "unknown", "fps": 0.0, "message": ""})
    reported_ts: float = 0.0  # when capture last reported on it (0: never)
    edge: dict[str, float] = field(default_factory=dict)
    detections: dict[str, dict[str, Any]] = field(default_factory=dict)  # by source: edge, cloud

    def view(self) -> dict[str, Any]:
        return {"camera_id": self.camera_id, "role": self.role, "width": self.width, "height": self.height,
                "server": self.server, "capture": self.capture, "edge": self.edge, "detections": self.detections}

    def silent_for(self, now: float, after_s: float) -> float | None:
        """Seconds since capture last reported, when that is longer than ``after_s`` and not yet shown."""
        if not self.reported_ts or self.capture.get("state") == "down":
            return None
        silent = now - self.reported_ts
        return silent if silent > after_s else None


class SiteState:
    def __init__(self, site_name: str, cameras: list[ResolvedCamera], alerts_kept: int = 50,
                 price_set: str = "us-east-1-2026", servers: dict[str, str] | None = None,
                 camera_silent_after_s: float = 6.0) -> None:
        """``servers``: camera id -> the edge server (placement group) capturing it."""
        self.site_name = site_name
        servers = servers or {}
        self.cameras = {c.id: CameraState(c.id, c.role, c.width, c.height, servers.get(c.id, "edge")) for c in cameras}
        self.camera_silent_after_s = camera_silent_after_s
        self.alerts: deque[dict[str, Any]] = deque(maxlen=alerts_kept)
        self.watch_hits: deque[dict[str, Any]] = deque(maxlen=alerts_kept)
        self.health: dict[tuple[str, str], Health] = {}
        self.price_set = price_set
        self.uplink: dict[str, Any] = {"frames_sampled": 0, "records_sent": 0, "bytes_sent": 0, "cost": None}
        self.program: dict[str, Any] = {"message": "", "state": "unknown", "fps": 0.0}
        self.cloud_alerts_received = 0.0
        self.redis_ok = False
        self.track_labels = CloudTrackLabels()

    # -- updates ---------------------------------------------------------------------------

    def apply(self, message: Envelope) -> list[Event]:
        if isinstance(message, DetectionSet):
            return self._detections(message)
        if isinstance(message, Health):
            return self._health(message)
        if isinstance(message, Alert):
            view = alert_view(message)
            self.alerts.appendleft(view)
            return [{"type": "alert", "data": view}]
        if isinstance(message, FaceMatches):
            views = hit_views(message)
            self.watch_hits.extendleft(views)
            return [{"type": "watch_hit", "data": view} for view in views]
        return []

    def _detections(self, message: DetectionSet) -> list[Event]:
        camera = self.cameras.get(message.camera_id)
        if camera is None:
            return []
        self.track_labels.learn(message)
        view = detection_view(message, self.track_labels)
        camera.detections[message.source] = view
        return [{"type": "detections", "data": view}]

    def _health(self, report: Health) -> list[Event]:
        self.health[(report.service, report.instance)] = report
        self._forget_silent_instances(report.ts)
        events: list[Event] = []
        if report.service == "capture" and report.camera_id in self.cameras:
            camera = self.cameras[report.camera_id]
            camera.capture = {"state": report.state, "fps": report.counters.get("fps", 0.0), "message": report.message,
                              "frames": report.counters.get("frames", 0.0)}
            camera.reported_ts = max(camera.reported_ts, report.ts)
            events.append({"type": "camera", "data": camera.view() | {"detections": None}})
        elif report.service == "edge_infer":
            events.extend(self._edge_counters(report))
        elif report.service == "sampler":
            events.append({"type": "uplink", "data": self._uplink(report)})
        elif report.service == "results_bridge":
            self.cloud_alerts_received = report.counters.get("alerts", 0.0)
        elif report.service == "compositor":
            self.program = {"message": report.message, "state": report.state, "fps": round(report.counters.get("fps", 0.0), 1)}
            events.append({"type": "program", "data": self.program})
        events.append({"type": "service", "data": self._service_view(report)})
        return events

    def mark_silent_cameras(self, now: float) -> list[Event]:
        """Cameras whose capture stopped reporting (its server is gone or cut off) are shown down."""
        events: list[Event] = []
        for camera in self.cameras.values():
            silent = camera.silent_for(now, self.camera_silent_after_s)
            if silent is None:
                continue
            camera.capture = {**camera.capture, "state": "down", "fps": 0.0,
                              "message": f"no report from its capture for {silent:.0f} s: server {camera.server} is down or unreachable"}
            events.append({"type": "camera", "data": camera.view() | {"detections": None}})
        return events

    def servers(self) -> list[dict[str, Any]]:
        """Each edge server with its cameras: up while any of them delivers, down when all are silent."""
        by_server: dict[str, list[CameraState]] = {}
        for camera in self.cameras.values():
            by_server.setdefault(camera.server, []).append(camera)
        views = []
        for server, cameras in by_server.items():
            states = [c.capture.get("state", "unknown") for c in cameras]
            state = "down" if all(s == "down" for s in states) else "up" if any(s in ("ok", "degraded") for s in states) else "unknown"
            views.append({"server": server, "state": state, "cameras": {c.camera_id: c.capture.get("state") for c in cameras}})
        return views

    def _forget_silent_instances(self, now: float, silent_after_s: float = 120.0) -> None:
        """A restarted service reports under a new instance name: drop the old one once it has been silent a while."""
        for key in [key for key, report in self.health.items() if now - report.ts > silent_after_s]:
            del self.health[key]

    def _edge_counters(self, report: Health) -> list[Event]:
        events: list[Event] = []
        per_camera: dict[str, dict[str, float]] = {}
        for key, value in report.counters.items():
            camera_id, _, name = key.rpartition(".")
            if camera_id in self.cameras:
                per_camera.setdefault(camera_id, {})[name] = value
        for camera_id, counters in per_camera.items():
            camera = self.cameras[camera_id]
            camera.edge = {k: counters.get(k, 0.0) for k in ("detect_fps", "analysed", "skipped", "skipped_stale",
                                                              "dropped", "latency_ms", "inference_ms", "people")}
            events.append({"type": "camera", "data": camera.view() | {"detections": None}})
        return events

    def _uplink(self, report: Health) -> dict[str, Any]:
        counters = report.counters
        cost = running_cost(counters, self.cloud_alerts_received, self.price_set)
        self.uplink = {
            "state": report.state, "message": report.message,
            "frames_sampled": counters.get("frames_sampled", 0.0), "records_sent": counters.get("records_sent", 0.0),
            "bytes_sent": counters.get("bytes_sent", 0.0), "spool_depth": counters.get("spool_depth", 0.0),
            "patch_bytes": counters.get("patch_bytes", 0.0), "bytes_saved": counters.get("uplink_bytes_saved", 0.0),
            "budget_kbps": counters.get("uplink_budget_kbps", 0.0), "uptime_s": counters.get("uptime_s", 0.0),
            "cost": cost.as_dict() if cost else None,
            "sampling": sampling.as_dict() if (sampling := summarize(counters)) else None,
        }
        return self.uplink

    @staticmethod
    def _service_view(report: Health) -> dict[str, Any]:
        return {"service": report.service, "instance": report.instance, "state": report.state,
                "message": report.message, "ts": report.ts}

    # -- reads -------------------------------------------------------------------------------

    def health_reports(self, max_age_s: float = 60.0) -> list[Health]:
        """The latest report of every service instance heard from recently (for /metrics)."""
        now, reports = time.time(), list(self.health.values())  # one C-level copy: /metrics reads from another thread
        return [r for r in reports if now - r.ts <= max_age_s]

    def snapshot(self) -> dict[str, Any]:
        return {
            "site": self.site_name,
            "redis_ok": self.redis_ok,
            "cameras": [c.view() for c in self.cameras.values()],
            "servers": self.servers(),
            "alerts": list(self.alerts),
            "watch_hits": list(self.watch_hits),
            "uplink": self.uplink,
            "program": self.program,
            "services": [self._service_view(r) for r in self.health.values()],
        }
