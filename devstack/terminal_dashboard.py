"""The live table the demo shows: per camera capture and detection figures, cloud results, program.

Everything shown is read back from Redis (the health and detection streams), i.e. what
the services really published, not what the demo believes they did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from shared.sampling_summary import SamplingSummary, summarize
from shared.schemas import DetectionSet, Health, SchemaError, decode
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus


@dataclass
class CameraView:
    role: str = ""
    capture_state: str = "-"
    capture_fps: float = 0.0
    detect_fps: float = 0.0
    skipped: int = 0
    latency_ms: float = 0.0
    people_now: int = 0
    people_max: int = 0
    edge_sets: int = 0
    cloud_results: int = 0
    cloud_labels: str = ""
    cloud_latency_ms: float = 0.0


@dataclass
class SiteView:
    cameras: dict[str, CameraView] = field(default_factory=dict)
    services: dict[str, Health] = field(default_factory=dict)
    last_detection_id: str = "0-0"
    last_health_id: str = "0-0"

    def camera(self, camera_id: str) -> CameraView:
        return self.cameras.setdefault(camera_id, CameraView())


class TerminalDashboard:
    """The demo's live table in the terminal (the operator web page is services/dashboard)."""

    def __init__(self, bus: StreamBus, camera_roles: dict[str, str]) -> None:
        self.bus = bus
        self.view = SiteView()
        for camera_id, role in camera_roles.items():
            self.view.camera(camera_id).role = role
        self.started = time.monotonic()

    def refresh(self) -> None:
        self._read_health()
        self._read_detections()

    def _read_health(self) -> None:
        for entry in self.bus.follow({HEALTH_STREAM: self.view.last_health_id}, count=5000):
            self.view.last_health_id = entry.entry_id
            message = _decode(entry.payload)
            if isinstance(message, Health):
                self._apply_health(message)

    def _apply_health(self, health: Health) -> None:
        key = f"{health.service}/{health.instance}"
        self.view.services[key] = health
        if health.service == "capture" and health.camera_id:
            camera = self.view.camera(health.camera_id)
            camera.capture_state = health.state
            camera.capture_fps = health.counters.get("fps", 0.0)
        elif health.service == "edge_infer":
            for name, value in health.counters.items():
                camera_id, _, metric = name.rpartition(".")
                if not camera_id:
                    continue
                camera = self.view.camera(camera_id)
                if metric == "detect_fps":
                    camera.detect_fps = value
                elif metric == "skipped":
                    camera.skipped = int(value)
                elif metric == "latency_ms":
                    camera.latency_ms = value

    def _read_detections(self) -> None:
        for entry in self.bus.follow({DETECTIONS_STREAM: self.view.last_detection_id}, count=10000):
            self.view.last_detection_id = entry.entry_id
            message = _decode(entry.payload)
            if isinstance(message, DetectionSet):
                self._apply_detections(message)

    def _apply_detections(self, result: DetectionSet) -> None:
        camera = self.view.camera(result.camera_id)
        people = result.count("person")
        if result.source == "cloud":
            camera.cloud_results += 1
            names = sorted({d.label for d in result.detections})
            camera.cloud_labels = ", ".join(names[:4]) or "(nothing)"
            camera.cloud_latency_ms = max(0.0, (result.published_ts - result.capture_ts) * 1000)
        else:
            camera.edge_sets += 1
            camera.people_now = people
        camera.people_max = max(camera.people_max, people)

    def render(self, title: str) -> Group:
        table = Table(title=title, title_justify="left", expand=False)
        for heading, justify in (
            ("camera", "left"), ("role", "left"), ("state", "left"), ("cap fps", "right"),
            ("det fps", "right"), ("skipped", "right"), ("lat ms", "right"),
            ("people", "right"), ("max", "right"), ("cloud", "right"), ("cloud labels", "left"),
        ):
            table.add_column(heading, justify=justify)  # type: ignore[arg-type]
        for camera_id, c in sorted(self.view.cameras.items(), key=lambda kv: (kv[1].role != "master", kv[0])):
            state_style = "green" if c.capture_state == "ok" else "yellow"
            table.add_row(
                camera_id, c.role, Text(c.capture_state, style=state_style), f"{c.capture_fps:.1f}",
                f"{c.detect_fps:.1f}", str(c.skipped), f"{c.latency_ms:.0f}", str(c.people_now), str(c.people_max),
                str(c.cloud_results) if c.role == "master" else "-", c.cloud_labels if c.role == "master" else "",
            )
        lines = [table]
        program = self.program_line()
        if program:
            lines.append(Text(program, style="cyan"))
        sampling = self.sampling_summary()
        if sampling:
            lines.append(Text(sampling.line(), style="magenta"))
        return Group(*lines)

    def sampling_summary(self) -> SamplingSummary | None:
        """Frames sent and saved and the reason mix, from the sampler's latest health report."""
        for key, health in self.view.services.items():
            if key.startswith("sampler/"):
                return summarize(health.counters)
        return None

    def program_line(self) -> str:
        for key, health in self.view.services.items():
            if key.startswith("compositor/"):
                on_air = health.message or health.state
                return f"program: {on_air}"
        return ""

    def summary_rows(self) -> list[tuple[str, str]]:
        cams = self.view.cameras.values()
        edge = sum(c.edge_sets for c in cams)
        cloud = sum(c.cloud_results for c in cams)
        people_max = max((c.people_max for c in cams), default=0)
        return [
            ("detection sets from the edge", str(edge)),
            ("results from the cloud path", str(cloud)),
            ("most people seen by one camera", str(people_max)),
            ("frames skipped to stay real-time", str(sum(c.skipped for c in cams))),
            *self._sampling_rows(),
        ]

    def _sampling_rows(self) -> list[tuple[str, str]]:
        sampling = self.sampling_summary()
        if sampling is None:
            return []
        return [
            (f"master frames sent to the cloud ({sampling.policy})", str(sampling.sent)),
            ("master frames saved (not sent)", f"{sampling.saved} ({sampling.saved_share:.1%})"),
            ("sent for", ", ".join(f"{k} {v}" for k, v in sampling.sent_reasons.items()) or "-"),
            ("objects sent to the cloud (edge tracks)", str(sampling.objects_sent)),
            ("frames sent per object", f"{sampling.frames_per_object:.2f}" if sampling.frames_per_object else "-"),
        ]


def _decode(payload: bytes) -> object:
    try:
        return decode(payload)
    except SchemaError:
        return None
