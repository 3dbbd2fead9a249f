"""Sampler settings (HYBRIDCAM_SAMPLER_*), on top of the common ones."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from shared.settings import CommonSettings

KINESIS_RECORD_LIMIT = 1024 * 1024  # data + partition key of one record
KINESIS_CALL_RECORDS = 500
KINESIS_CALL_BYTES = 5 * 1024 * 1024
REKOGNITION_IMAGE_LIMIT = 5 * 1024 * 1024


class SamplerSettings(CommonSettings):
    sampler_stream_name: str = Field("", description="Kinesis stream the sampled frames go to (the stack's StreamName output)")
    sampler_claim_check_bucket: str = Field("", description="S3 bucket for frames over the record limit (the stack's FramesBucketName output); empty = such frames are dropped and counted")
    sampler_claim_check_prefix: str = Field("claim-check", description="key prefix of claim-check objects")
    sampler_region: str | None = Field(None, description="AWS region; empty = the AWS SDK's default")
    sampler_jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of sampled frames")
    sampler_max_side: int = Field(1920, ge=0, description="longest side in pixels a sampled frame is shrunk to; 0 = never shrink")
    sampler_max_jpeg_bytes: int = Field(REKOGNITION_IMAGE_LIMIT, ge=10_000, le=REKOGNITION_IMAGE_LIMIT, description="largest JPEG sent (Rekognition takes 5 MB); quality is lowered to fit")
    sampler_record_limit_bytes: int = Field(KINESIS_RECORD_LIMIT, ge=1024, le=KINESIS_RECORD_LIMIT, description="records larger than this go by claim check (JPEG in S3, key in the record)")
    sampler_batch_records: int = Field(KINESIS_CALL_RECORDS, ge=1, le=KINESIS_CALL_RECORDS, description="records per PutRecords call")
    sampler_batch_bytes: int = Field(KINESIS_CALL_BYTES, ge=KINESIS_RECORD_LIMIT, le=KINESIS_CALL_BYTES, description="bytes per PutRecords call")
    sampler_max_attempts: int = Field(5, ge=1, le=20, description="PutRecords attempts for throttled or failed records before they are spooled")
    sampler_backoff_base_s: float = Field(0.1, gt=0, description="first retry delay (doubles, full jitter)")
    sampler_backoff_cap_s: float = Field(5.0, gt=0, description="longest retry delay")
    sampler_connect_timeout_s: float = Field(3.0, gt=0, description="AWS connection timeout; a cloud that does not answer is treated as unreachable")
    sampler_spool_dir: Path = Field(Path(".hybridcam/sampler-spool"), description="on-disk spool used while the cloud is unreachable")
    sampler_spool_max_bytes: int = Field(1024**3, ge=1024, description="spool size bound; the oldest records are dropped (and counted) beyond it")
    sampler_spool_max_records: int = Field(100_000, ge=1, description="spool length bound")
    sampler_cloud_retry_s: float = Field(5.0, gt=0, description="wait before trying an unreachable cloud again")
    sampler_lambda_batch_size: int = Field(10, ge=1, le=10_000, description="records per Lambda invocation (the stack's BatchSize); estimates handler_invocations in the run counters")
    sampler_counters_file: Path | None = Field(None, description="JSON run counters (the cost command's --from-run); empty = not written")
    sampler_health_interval_s: float = Field(2.0, gt=0, description="how often counters go to the health stream and the counters file")
    sampler_group: str = Field("sampler", description="consumer group on the frame streams")
    sampler_consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", description="consumer name in the group (host-pid by default)")
    sampler_face_watch: bool = Field(False, description="mark frames where the edge saw a person tall enough for a searchable face (the cloud's face watch-list searches only those)")
    sampler_face_min_px: float = Field(40.0, gt=0, description="smallest searchable face in pixels of a 1080-line frame (Rekognition's documented minimum is 40)")
    sampler_heartbeat_interval_s: float = Field(30.0, ge=0.0, le=3600.0, description="how often this server's health summary goes to the fleet console through the cloud path (first one after one interval); 0 = never")
    sampler_heartbeat_server: str = Field("", description="this server's id on the fleet console; empty = the host name")
    sampler_claim_idle_ms: int = Field(10_000, ge=100, description="take over a dead sampler's unacknowledged frames after this idle time")

    # -- which frames go (services/sampler/policy.py, docs/sampling.md) -----------------------
    sampler_policy: Literal["adaptive", "every_nth"] = Field("adaptive", description="adaptive: send what changes what we know; every_nth: every camera's cloud_sample_every-th frame")
    sampler_watch_labels: str = Field("person,car,truck,bus,motorcycle,bicycle", description="edge labels whose count and scores the adaptive policy watches (comma list)")
    sampler_unsure_low: float = Field(0.35, ge=0.0, le=1.0, description="an edge watch-label score from here ...")
    sampler_unsure_high: float = Field(0.5, ge=0.0, le=1.0, description="... up to here makes the frame a candidate (reason unsure)")
    sampler_unsure_min_change: float = Field(0.5, ge=0.0, description="... but only if the scene changed at least this share of the change threshold since the last sent frame")
    sampler_count_changes: bool = Field(True, description="send when the number of watch-label objects changed since the last sent frame (appeared / left)")
    sampler_change_fraction: float = Field(0.02, gt=0.0, le=1.0, description="changed: share of pixels that changed since the last sent frame")
    sampler_change_area: float = Field(0.004, gt=0.0, le=1.0, description="changed: share of the frame covered by the largest changed region")
    sampler_change_edges: float = Field(0.02, gt=0.0, le=1.0, description="changed: share of the frame whose edges appeared or vanished")
    sampler_change_pixel_delta: int = Field(18, ge=1, le=255, description="grey-level difference from which a pixel counts as changed")
    sampler_track_driven: bool = Field(True, description="adaptive: where the edge's boxes carry track ids, send each new watch-label track once (new_object) instead of counting (appeared / left)")
    sampler_track_min_size: float = Field(0.04, gt=0.0, le=1.0, description="adaptive: a track is well visible from this size (square root of its box's share of the frame), with a sure score and not cut by the border")
    sampler_track_patience_s: float = Field(0.5, ge=0.0, description="adaptive: a track that is not well visible is sent for after this long anyway")
    sampler_max_fps: float = Field(1.0, gt=0.0, description="adaptive: at most this many frames per second per camera")
    sampler_max_interval_s: float = Field(30.0, gt=0.0, description="adaptive heartbeat: send a frame at least this often per camera")
    sampler_busy_backoff: float = Field(
        2.5, ge=1.0, description="adaptive: in a scene that keeps changing, each further change waits this many times longer (1 = off)")
    sampler_settle_s: float = Field(2.0, ge=0.0, description="adaptive: a busy spell ends after the scene held still this long")
    sampler_still_motion: float = Field(
        0.002, gt=0.0, le=1.0, description="adaptive: the scene is still while less than this share of its pixels moves")
    sampler_budget_images_per_hour: float = Field(0.0, ge=0.0, description="site-wide budget in images per hour (token bucket); 0 = none")
    sampler_budget_usd_per_hour: float = Field(0.0, ge=0.0, description="site-wide budget in USD per hour at the price set's Rekognition price; 0 = none")
    sampler_budget_burst: float = Field(10.0, ge=1.0, description="images the budget lets through at once after a quiet spell")
    sampler_price_set: str = Field("us-east-1-2026", description="price set for a USD budget (hybridcam cost --list-price-sets)")
    sampler_edge_wait_s: float = Field(0.3, ge=0.0, le=5.0, description="how long a frame waits for its edge detection set")
    sampler_edge_silence_s: float = Field(5.0, gt=0.0, description="no edge result for this long: fall back to change + heartbeat (health says so)")

    # -- the thin uplink (docs/uplink.md) ------------------------------------------------------
    sampler_patches_per_s: float = Field(0.0, ge=0.0, le=100.0, description="super-resolution patches sent per second "
                                         "(LiveNAS: about 10); 0 = no patches")
    sampler_patch_px: int = Field(64, ge=32, le=512, description="side of a patch in frame pixels (a multiple of 16 x the shrink factor)")
    sampler_patch_factor: int = Field(2, ge=2, le=4, description="the shrink factor patches are measured and trained for")
    sampler_patch_jpeg_quality: int = Field(40, ge=5, le=95, description="the JPEG quality patches are measured at (the uplink's)")
    sampler_patch_prefix: str = Field("sr-patches", min_length=1, description="S3 key prefix of patch sets in the claim-check bucket")
    sampler_patch_flush_s: float = Field(10.0, gt=0.0, description="a camera's patches go to S3 as one object this often")

    @model_validator(mode="after")
    def _unsure_band_ascends(self) -> SamplerSettings:
        if self.sampler_unsure_low >= self.sampler_unsure_high:
            raise ValueError("HYBRIDCAM_SAMPLER_UNSURE_LOW must be below HYBRIDCAM_SAMPLER_UNSURE_HIGH")
        if self.sampler_budget_images_per_hour and self.sampler_budget_usd_per_hour:
            raise ValueError("set a budget in images per hour or in USD per hour, not both")
        if self.sampler_patches_per_s and self.sampler_patch_px % (16 * self.sampler_patch_factor):
            raise ValueError("HYBRIDCAM_SAMPLER_PATCH_PX must be a multiple of 16 x HYBRIDCAM_SAMPLER_PATCH_FACTOR")
        if self.sampler_patches_per_s and not self.sampler_claim_check_bucket:
            raise ValueError("HYBRIDCAM_SAMPLER_PATCHES_PER_S needs HYBRIDCAM_SAMPLER_CLAIM_CHECK_BUCKET (patches go to S3)")
        return self
