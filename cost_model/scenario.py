"""The scenario being priced: cameras, sampling, duty cycle, alerting and the edge hardware.

Every field carries a description; the CLI builds one flag per field from it, so `--help`
and the YAML scenario file always agree with this model.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIB = 1024 * 1024
KINESIS_DEFAULT_RECORD_LIMIT_BYTES = 1 * MIB
KINESIS_LARGE_RECORD_LIMIT_BYTES = 10 * MIB
# Rough JPEG size (quality ~80) of a surveillance frame, in bytes per pixel.
JPEG_BYTES_PER_PIXEL = 0.15
# Rough H.264 bitrate of a surveillance stream, in bits per pixel per frame.
H264_BITS_PER_PIXEL = 0.1

ARCHITECTURES: dict[str, str] = {
    "cloud-frames": "Cloud-only frames (Kinesis > Lambda > detector)",
    "cloud-video-sagemaker": "Cloud-only video (KVS + SageMaker endpoint)",
    "cloud-video-ec2": "Cloud-only video (KVS + GPU EC2)",
    "hybrid": "Hybrid (edge box + sampled cloud path)",
    "edge-only": "Edge-only (edge GPU box)",
    "cloud-video-rekognition": "Cloud-only video (KVS + Rekognition stream processor)",
}
DEFAULT_ARCHITECTURES = [
    "cloud-frames",
    "cloud-video-sagemaker",
    "cloud-video-ec2",
    "hybrid",
    "edge-only",
]


class Scenario(BaseModel):
    """What is priced. All money is USD; a 'month' is hours_per_day x days_per_month of activity."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cameras: int = Field(4, ge=1, le=10_000, description="number of cameras on the site")
    resolution: str = Field("1920x1080", description="camera resolution as WIDTHxHEIGHT, e.g. 1280x720")
    fps: float = Field(15.0, gt=0, le=240, description="camera frame rate (frames per second)")
    masters: list[int] | Literal["all"] = Field(
        default_factory=lambda: [1],
        description="which cameras are masters (1-based numbers, comma separated, or 'all'); "
        "in the hybrid architecture only masters send sampled frames to the cloud",
    )
    sample_every_n: int | None = Field(
        None, ge=1, description="sampling as 1-in-N camera frames sent to the cloud (give this or sample_fps)"
    )
    sample_fps: float | None = Field(
        None, gt=0, description="sampling as frames per second per camera sent to the cloud (default 1.0)"
    )
    hours_per_day: float = Field(24.0, gt=0, le=24, description="hours per day the cameras are analysed")
    days_per_month: float = Field(30.0, gt=0, le=31, description="days per month the cameras are analysed")
    jpeg_kb: float | None = Field(
        None, gt=0, description="size of one sampled JPEG in KB (1 KB = 1,000 bytes); default estimated from resolution"
    )
    alerts_per_camera_hour: float = Field(2.0, ge=0, description="alerts raised per camera per analysed hour")
    alert_channel: Literal["email", "sms", "both", "none"] = Field(
        "email", description="how SNS delivers each alert: email, sms, both or none"
    )
    detector: Literal["rekognition", "sagemaker"] = Field(
        "rekognition",
        description="cloud detector backend called by the Lambda handler: rekognition (DetectLabels, per image) "
        "or sagemaker (a real-time endpoint, per instance-hour)",
    )
    video_bitrate_mbps: float | None = Field(
        None, gt=0, description="bitrate of one camera's H.264 stream in Mbps (video architectures); "
        "default estimated from resolution and fps",
    )
    api_reads_per_day: float = Field(1000.0, ge=0, description="result reads per day through the HTTP API")
    store_frames: Literal["all", "alerts", "none"] = Field(
        "all", description="which analysed frames are kept in S3: all, alerts (only frames that raised one) or none"
    )
    s3_retention_days: float = Field(30.0, ge=0, description="days a stored frame stays in S3")
    kinesis_mode: Literal["provisioned", "on-demand"] = Field(
        "provisioned", description="Kinesis Data Streams capacity mode: provisioned (shards) or on-demand"
    )
    kinesis_large_records: bool = Field(
        False, description="the stream's maximum record size is raised to 10 MiB (default limit is 1 MiB)"
    )
    face_search: bool = Field(False, description="search faces on the watch-list (Rekognition DetectFaces + SearchFacesByImage)")
    face_frame_share: float = Field(
        0.3, ge=0, le=1, description="share of sampled frames the edge marks for face search (a person tall enough for a face)")
    faces_per_face_frame: float = Field(1.5, ge=0, description="searchable faces per marked frame (one SearchFacesByImage each)")
    enrolled_faces: int = Field(100, ge=0, description="faces stored in the watch-list collection")
    lambda_memory_mb: int = Field(512, ge=128, le=10_240, description="memory of the Lambda handler in MB")
    lambda_ms_per_frame: float = Field(
        400.0, gt=0, description="Lambda run time per frame in ms (mostly waiting for the detector)"
    )
    lambda_batch_size: int = Field(10, ge=1, le=10_000, description="Kinesis records per Lambda invocation")
    sagemaker_instance: str = Field("ml.m5.xlarge", description="SageMaker real-time endpoint instance type")
    sagemaker_fps_capacity: float = Field(
        10.0, gt=0, description="frames per second one SageMaker endpoint instance can analyse"
    )
    gpu_instance: str = Field("g4dn.xlarge", description="EC2 GPU instance type for the video architecture")
    gpu_fps_capacity: float = Field(60.0, gt=0, description="frames per second one GPU instance can analyse")
    provisioned_hours: Literal["24x7", "active"] = Field(
        "24x7",
        description="how long always-on resources (shards, endpoints, instances, edge boxes) run: "
        "24x7, or only the active hours_per_day",
    )
    edge_box_usd: float = Field(700.0, ge=0, description="price of one hybrid edge box (CPU mini PC) in USD")
    edge_box_life_months: float = Field(36.0, gt=0, description="months the hybrid edge box is amortised over")
    edge_box_watts: float = Field(35.0, ge=0, description="average power draw of the hybrid edge box in watts")
    cameras_per_edge_box: int = Field(8, ge=1, description="cameras one hybrid edge box serves")
    edge_gpu_box_usd: float = Field(1500.0, ge=0, description="price of one edge-only GPU box in USD")
    edge_gpu_box_life_months: float = Field(36.0, gt=0, description="months the edge GPU box is amortised over")
    edge_gpu_box_watts: float = Field(120.0, ge=0, description="average power draw of the edge GPU box in watts")
    cameras_per_edge_gpu_box: int = Field(8, ge=1, description="cameras one edge GPU box serves")
    electricity_usd_per_kwh: float = Field(0.17, ge=0, description="electricity price in USD per kWh")
    uplink_kbps: float | None = Field(
        None, gt=0, description="the site's uplink budget in kbit/s: the hybrid sampler shrinks and compresses sampled "
        "frames to fit it (docs/uplink.md), so each record is at most the budget's share of a second")
    super_resolution: bool = Field(
        False, description="hybrid: a super-resolution endpoint restores shrunk frames before detection, with its online "
        "trainer (a Fargate task) and the edge's patches in S3")
    sr_instance: str = Field("ml.c5.xlarge", description="SageMaker instance type of the super-resolution endpoint")
    sr_trainer_vcpu: float = Field(2.0, gt=0, description="vCPUs of the super-resolution trainer's Fargate task")
    sr_trainer_gb: float = Field(4.0, gt=0, description="memory in GB of the super-resolution trainer's Fargate task")
    sr_patch_sets_per_hour: float = Field(360.0, ge=0, description="patch-set objects each master puts in S3 an hour "
                                          "(one every 10 s by default)")
    live_channel: bool = Field(False, description="hybrid: the program to many viewers through MediaLive and MediaPackage")
    live_bitrate_mbps: float = Field(4.0, gt=0, le=10, description="bitrate of the live channel's program in Mbps")
    live_viewer_hours: float = Field(0.0, ge=0, description="viewer-hours a month watching the live channel (egress)")
    console_viewer_hours: float = Field(
        0.0, ge=0, description="hybrid: hours a month someone has the fleet console open (0 = no console)")
    console_sites: int = Field(1, ge=1, description="sites the fleet console shows (each refresh reads each one)")
    console_refresh_s: float = Field(15.0, gt=0, description="seconds between two refreshes of the fleet console")
    price_set: str = Field("us-east-1-2026", description="price set name (see --list-price-sets) or a YAML file path")
    architectures: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ARCHITECTURES),
        description="architectures to price, comma separated, from: " + ", ".join(ARCHITECTURES),
    )

    @field_validator("resolution")
    @classmethod
    def _resolution_is_width_x_height(cls, value: str) -> str:
        parts = value.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise ValueError("must be WIDTHxHEIGHT in pixels, like 1920x1080")
        return f"{int(parts[0])}x{int(parts[1])}"

    @field_validator("masters", mode="before")
    @classmethod
    def _masters_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() == "all":
                return "all"
            return [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("architectures", mode="before")
    @classmethod
    def _architectures_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("architectures")
    @classmethod
    def _architectures_are_known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in ARCHITECTURES]
        if unknown:
            raise ValueError(f"unknown architecture {unknown[0]!r}; choose from {', '.join(ARCHITECTURES)}")
        if not value:
            raise ValueError("name at least one architecture")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.sample_every_n is not None and self.sample_fps is not None:
            raise ValueError("give sample_every_n or sample_fps, not both")
        if self.masters != "all":
            bad = [m for m in self.masters if not 1 <= m <= self.cameras]
            if bad:
                raise ValueError(f"masters: camera {bad[0]} does not exist (cameras are 1..{self.cameras})")
        limit = KINESIS_LARGE_RECORD_LIMIT_BYTES if self.kinesis_large_records else KINESIS_DEFAULT_RECORD_LIMIT_BYTES
        if self.uplink_jpeg_bytes(self.master_count) > limit:
            hint = "" if self.kinesis_large_records else "; set kinesis_large_records for records up to 10 MiB"
            raise ValueError(
                f"jpeg_kb: a {self.jpeg_bytes / 1000:,.0f} KB frame is over the Kinesis record limit "
                f"of {limit // MIB} MiB{hint}"
            )
        return self

    # Derived quantities -------------------------------------------------------------

    @property
    def width(self) -> int:
        return int(self.resolution.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.resolution.split("x")[1])

    @property
    def jpeg_bytes(self) -> float:
        if self.jpeg_kb is not None:
            return self.jpeg_kb * 1000
        return self.width * self.height * JPEG_BYTES_PER_PIXEL

    def uplink_jpeg_bytes(self, sending_cameras: int) -> float:
        """Bytes of one sampled frame: the estimate, or the uplink budget's share when that is smaller."""
        if self.uplink_kbps is None or not sending_cameras:
            return self.jpeg_bytes
        per_frame = self.uplink_kbps * 1000 / 8 / (sending_cameras * self.sampled_fps)
        return min(self.jpeg_bytes, per_frame)

    @property
    def bitrate_bits_per_s(self) -> float:
        if self.video_bitrate_mbps is not None:
            return self.video_bitrate_mbps * 1e6
        return self.width * self.height * self.fps * H264_BITS_PER_PIXEL

    @property
    def sampled_fps(self) -> float:
        """Frames per second per camera sent to the cloud path."""
        if self.sample_every_n is not None:
            return self.fps / self.sample_every_n
        return min(self.fps, self.sample_fps if self.sample_fps is not None else 1.0)

    @property
    def master_count(self) -> int:
        return self.cameras if self.masters == "all" else len(set(self.masters))

    @property
    def active_hours(self) -> float:
        """Analysed hours per camera per month."""
        return self.hours_per_day * self.days_per_month

    @property
    def provisioned_hours_per_month(self) -> float:
        return 24 * self.days_per_month if self.provisioned_hours == "24x7" else self.active_hours

    @property
    def camera_hours(self) -> float:
        return self.cameras * self.active_hours

    def boxes(self, cameras_per_box: int) -> int:
        return math.ceil(self.cameras / cameras_per_box)

    def with_sampled_fps(self, sampled_fps: float) -> Scenario:
        """A copy sampling `sampled_fps` frames per second per camera (capped at the camera fps)."""
        return self.model_copy(update={"sample_every_n": None, "sample_fps": min(sampled_fps, self.fps)})
