"""Size a site (or a fleet of equal sites) from a server class's measured capacity.

Cameras are packed first-fit-decreasing onto edge servers by their share of one server's budget
(capacity_file.Budget), masters first. The cloud side is sized for all sites together from the
sampled master frames: Kinesis shards by records/s, MB/s and Lambda concurrency (Little's law on
the Lambda's time per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from hybridcam.plan.capacity_file import Budget, CapacityFile
from services.capture.camera_worker import FRAME_STREAM_MAXLEN
from shared.frame_ring import ring_bytes, ring_slots_for

MIB = 1024 * 1024
SHM_SPARE_BYTES = 16 * MIB  # as docker/frame_memory.py: every ring twice plus spare
KINESIS_SHARD_RECORDS_PER_S = 1000
KINESIS_SHARD_BYTES_PER_S = 1 * MIB
RING_SECONDS = 1.0  # HYBRIDCAM_CAPTURE_RING_S's default
SITE_STREAMS = 5  # detections, health, alerts, cloud results, events: on the site Redis, each bounded by stream_maxlen


class CameraSpec(BaseModel):
    """One line of the planner's input: COUNT cameras alike."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=10_000)
    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)
    fps: float = Field(gt=0, le=240)
    role: str = Field("slave", pattern=r"^(master|slave)$")


class PlanInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[CameraSpec] = Field(min_length=1)
    backend: str = "auto"
    analyse_fps: float | None = Field(None, gt=0, description="analysed frames/s per camera; default every frame")
    headroom: float = Field(0.8, gt=0, le=1, description="share of a server's budget the plan may use")
    sites: int = Field(1, ge=1, le=100_000)
    send_fraction: float = Field(gt=0, le=1)
    ring_slots: int = Field(0, ge=0, le=1024, description="frames per camera ring; 0 = one second at the camera's rate, as capture")
    stream_maxlen: int = Field(2000, ge=10)
    servers: int | None = Field(None, ge=1, le=10_000, description="fixed number of servers; default as many as the target needs")
    lambda_s_per_frame: float = Field(0.4, gt=0)
    max_parallelization: int = Field(10, ge=1, le=10, description="Lambda ParallelizationFactor allowed per shard")
    sampled_max_side: int = Field(1920, ge=0, description="the sampler shrinks frames to this longest side (0: never)")


@dataclass
class PlannedCamera:
    id: str
    width: int
    height: int
    fps: float
    role: str
    analysed_fps: float
    capture_load: float  # share of one server's budget spent capturing
    analysis_load: float  # share spent analysing analysed_fps

    @property
    def load(self) -> float:
        return self.capture_load + self.analysis_load


@dataclass
class Server:
    name: str
    cameras: list[PlannedCamera] = field(default_factory=list)

    @property
    def load(self) -> float:
        return sum(camera.load for camera in self.cameras)

    def settle(self) -> None:
        """Over budget (a fixed server count): every camera's analysed rate shrinks alike to what is left."""
        room = 1.0 - sum(camera.capture_load for camera in self.cameras)
        demand = sum(camera.analysis_load for camera in self.cameras)
        if demand > room:
            scale = max(0.0, room) / demand
            for camera in self.cameras:
                camera.analysed_fps *= scale
                camera.analysis_load *= scale

    @property
    def offered_fps(self) -> float:
        return sum(camera.fps for camera in self.cameras)

    @property
    def analysed_fps(self) -> float:
        return sum(camera.analysed_fps for camera in self.cameras)

    def ring_bytes(self, slots: int) -> int:
        """The rings of the server's cameras: ``slots`` each, or (0) one second at each camera's rate, as capture sizes them."""
        return sum(ring_bytes(camera.width, camera.height, slots or ring_slots_for(camera.fps, RING_SECONDS))
                   for camera in self.cameras)

    def shm_bytes(self, slots: int) -> int:
        return 2 * self.ring_bytes(slots) + SHM_SPARE_BYTES

    def frame_ref_bytes(self, per_ref: int, maxlen: int = FRAME_STREAM_MAXLEN) -> int:
        return len(self.cameras) * maxlen * per_ref


@dataclass(frozen=True)
class CloudSizing:
    frames_per_s_per_site: float
    bytes_per_s_per_site: float
    records_per_s: float
    bytes_per_s: float
    shards: int
    shards_by: str
    lambda_concurrency: int
    parallelization: int
    sites_per_shard: int


@dataclass
class Plan:
    servers: list[Server]
    cloud: CloudSizing
    capacity: CapacityFile
    notes: list[str]


class PlanRefused(ValueError):
    """An input no plan can meet; the message is one sentence."""


def expand_cameras(specs: list[CameraSpec]) -> list[tuple[str, CameraSpec]]:
    cameras: list[tuple[str, CameraSpec]] = []
    counters = {"master": 0, "slave": 0}
    for spec in specs:
        for _ in range(spec.count):
            counters[spec.role] += 1
            cameras.append((f"{spec.role}{counters[spec.role]}", spec))
    return cameras


def camera_load(budget: Budget, fps: float, analysed_fps: float) -> float:
    return budget.capture_s * fps + budget.analysis_s * analysed_fps


def plan_site(request: PlanInput, capacity: CapacityFile, sampled_jpeg_bytes: float | None = None) -> Plan:
    notes: list[str] = []
    planned: list[PlannedCamera] = []
    for camera_id, spec in expand_cameras(request.cameras):
        budget = capacity.budget(request.backend, spec.width, spec.height)
        if not budget.basis.startswith("measured"):
            note = f"{spec.width}x{spec.height} on {capacity.server_class} ({request.backend}): {budget.basis}"
            if note not in notes:
                notes.append(note)
        analysed = min(spec.fps, request.analyse_fps or spec.fps)
        camera = PlannedCamera(camera_id, spec.width, spec.height, spec.fps, spec.role, analysed,
                               budget.capture_s * spec.fps, budget.analysis_s * analysed)
        if request.servers is None and camera.load > request.headroom:
            raise PlanRefused(too_big(camera, budget, request.headroom, capacity.server_class))
        planned.append(camera)
    if request.servers is None:
        servers = pack(planned, request.headroom)
    else:
        servers = spread(planned, request.servers)
        for server in servers:
            if sum(camera.capture_load for camera in server.cameras) >= 1.0:
                raise PlanRefused(f"{request.servers} {capacity.server_class} server(s) cannot even capture these cameras "
                                  f"({server.name} would need {server.load:.1f} servers' worth): allow more servers.")
            server.settle()
    cloud = size_cloud(request, planned, capacity, sampled_jpeg_bytes)
    return Plan(servers, cloud, capacity, notes)


def too_big(camera: PlannedCamera, budget: Budget, headroom: float, server_class: str) -> str:
    most = max(0.0, (headroom - camera.capture_load) / budget.analysis_s)
    advice = f"analyse it at most {most:.1f} frames/s (--analyse-fps)" if most >= 0.5 else "lower its frame rate or resolution"
    return (f"One {camera.width}x{camera.height} camera at {camera.fps:g} fps analysed at {camera.analysed_fps:g} frames/s "
            f"needs {camera.load / headroom:.1f} {server_class} servers and a camera cannot be split across servers: "
            f"{advice}, or choose a bigger server class.")


def spread(cameras: list[PlannedCamera], count: int) -> list[Server]:
    """A fixed number of servers: each camera to the least loaded one (largest first)."""
    servers = [Server(f"edge-{index + 1}") for index in range(count)]
    for camera in sorted(cameras, key=lambda c: (-c.load, c.id)):
        min(servers, key=lambda s: s.load).cameras.append(camera)
    return [server for server in servers if server.cameras]


def pack(cameras: list[PlannedCamera], headroom: float) -> list[Server]:
    """First-fit decreasing by load; masters first so each server starts from a wide view."""
    servers: list[Server] = []
    for camera in sorted(cameras, key=lambda c: (c.role != "master", -c.load, c.id)):
        target = next((s for s in servers if s.load + camera.load <= headroom + 1e-9), None)
        if target is None:
            target = Server(f"edge-{len(servers) + 1}")
            servers.append(target)
        target.cameras.append(camera)
    return servers


def sampled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size the sampler sends a frame at (it shrinks the longest side to max_side)."""
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return round(width * scale), round(height * scale)


def size_cloud(request: PlanInput, cameras: list[PlannedCamera], capacity: CapacityFile,
               sampled_jpeg_bytes: float | None) -> CloudSizing:
    masters = [camera for camera in cameras if camera.role == "master"]
    frames = sum(camera.fps * request.send_fraction for camera in masters)
    size = sum(camera.fps * request.send_fraction
               * (sampled_jpeg_bytes or capacity.jpeg_bytes(*sampled_size(camera.width, camera.height, request.sampled_max_side)))
               for camera in masters)
    records = frames * request.sites
    bytes_per_s = size * request.sites
    by_records = math.ceil(records / KINESIS_SHARD_RECORDS_PER_S)
    by_bytes = math.ceil(bytes_per_s / KINESIS_SHARD_BYTES_PER_S)
    concurrency = max(1, math.ceil(records * request.lambda_s_per_frame)) if records else 0
    by_lambda = math.ceil(concurrency / request.max_parallelization)
    shards = max(1, by_records, by_bytes, by_lambda)
    reasons = [(by_records, "records/s"), (by_bytes, "MB/s"), (by_lambda, "Lambda concurrency")]
    shards_by = next(reason for count, reason in reasons if count == shards) if shards > 1 else "one is enough for the load"
    parallelization = max(1, math.ceil(concurrency / shards))
    per_shard = min(KINESIS_SHARD_RECORDS_PER_S / frames if frames else math.inf,
                    KINESIS_SHARD_BYTES_PER_S / size if size else math.inf,
                    request.max_parallelization / (frames * request.lambda_s_per_frame) if frames else math.inf)
    return CloudSizing(frames, size, records, bytes_per_s, shards, shards_by, concurrency, parallelization,
                       int(per_shard) if math.isfinite(per_shard) else 0)
