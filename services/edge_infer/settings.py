"""Edge inference settings (HYBRIDCAM_EDGE_*), on top of the common ones."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shared.settings import CommonSettings
from vision.actions import ActionThresholds

ACTION_PREFIX = "edge_action_"


class EdgeInferSettings(CommonSettings):
    edge_model: str = Field("nanodet", description="model name in models/ (nanodet, centernet) or a path to an .onnx file")
    edge_score_threshold: float = Field(0.35, gt=0.0, lt=1.0)
    edge_detector: dict[str, Any] | None = Field(
        None, description='detector settings as JSON keyed by type, e.g. {"type": "yolo", "model": "/models/yolo11n.onnx"} '
        "(types: auto, nanodet, yolo, centernet, tiled, movinet-stream; see models/README.md); when set, EDGE_MODEL and EDGE_SCORE_THRESHOLD are not used")
    edge_providers: str = Field("", description="comma list limiting providers (TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider); empty = best available")
    edge_fp16: bool = Field(True, description="FP16 on TensorRT")
    edge_trt_cache_dir: Path | None = Field(None, description="TensorRT engine cache (keep on a volume)")
    edge_threads: int = Field(0, ge=0, le=64, description="ONNX Runtime intra-op threads; 0 = all cores")
    edge_backend: str = Field("auto", description="auto, tensorrt, cuda, openvino or onnxruntime (CPU); auto = GPU if onnxruntime offers one, else the fastest CPU back-end measured by the probe (EDGE_PROBE_S)")
    edge_precision: str = Field("auto", description="auto, fp32, int8 or bf16 (OpenVINO only); auto = the fastest measured on the CPU within the recall floor (int8 when <model>-int8.onnx exists and keeps >= 0.95 of the FP32 people), FP16 on TensorRT")
    edge_requests: int = Field(0, ge=0, le=16, description="detector requests in flight (throughput mode); 0 = one per core, at most 4")
    edge_probe_s: float = Field(0.5, ge=0.0, le=10.0, description="CPU back-end, precision or requests left on auto are measured: seconds per candidate and round of a timed probe, cached per machine and model; 0 = no probe, the fixed rule")
    edge_probe_cache_dir: Path | None = Field(None, description="where the probe's figures are cached (default ~/.cache/hybridcam/backend-probe)")
    edge_schedule: Literal["motion", "every-camera"] = Field("motion", description="motion: cameras where nothing moves and nothing is tracked get the floor rate, the others the rest; every-camera: newest frame of every camera each round")
    edge_floor_fps: float = Field(1.0, gt=0.0, le=60.0, description="analysed frames/s of a camera where nothing moves (motion schedule)")
    edge_cameras: str = Field("", description="comma-separated camera ids; empty = every camera of the site")
    edge_max_frame_age_ms: float = Field(1000.0, gt=0, description="older frames are stale and skipped, never queued")
    edge_group: str = Field("edge_infer", description="consumer group on the frame streams")
    edge_consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    edge_claim_idle_ms: int = Field(5000, ge=100, description="take over a dead consumer's entries after this idle time")
    edge_pose: Literal["off", "crops", "frame"] = Field("off", description="pose stage on tracked people: crops = MoveNet "
        "lightning on each person's crop (per-person cost), frame = MoveNet multi-pose on the whole frame (up to 6 people "
        "per call); off = no poses and no actions (docs/actions.md)")
    edge_pose_rate_hz: float = Field(5.0, gt=0.0, le=60.0, description="poses per second of one tracked person, at most")
    edge_pose_max_people: int = Field(4, ge=1, le=64, description="people posed per analysed frame, at most (least recently posed first)")
    edge_pose_min_height_px: float = Field(48.0, ge=0.0, description="people whose box is smaller are not posed")
    # Thresholds of the action rules (vision/actions.py ActionThresholds; calibration in docs/actions.md).
    edge_action_keypoint_min_score: float = Field(0.3, ge=0.0, le=1.0, description="keypoints scored lower are not used")
    edge_action_upright_angle_deg: float = Field(35.0, ge=0.0, le=90.0, description="torso within this angle of vertical: upright")
    edge_action_lying_angle_deg: float = Field(60.0, ge=0.0, le=90.0, description="torso at least this far from vertical: lying")
    edge_action_upright_aspect: float = Field(1.6, gt=0.0, description="without torso keypoints: box height/width at least this: upright")
    edge_action_lying_aspect: float = Field(1.2, gt=0.0, description="without torso keypoints: box width/height at least this: lying")
    edge_action_fall_max_transition_s: float = Field(1.0, gt=0.0, description="a fall goes from upright to lying within this time")
    edge_action_fall_min_drop: float = Field(0.2, ge=0.0, description="and the box centre has dropped at least this many standing heights when it is confirmed")
    edge_action_fall_still_s: float = Field(1.0, ge=0.0, description="then the person stays lying (and slow) this long before fall fires")
    edge_action_still_speed: float = Field(0.5, gt=0.0, description="standing heights per second below which a person is still")
    edge_action_fall_hold_s: float = Field(10.0, ge=0.0, description="fall stays reported this long after it fired, unless the person gets up")
    edge_action_lying_s: float = Field(3.0, ge=0.0, description="lying this long: lying")
    edge_action_speed_tau_s: float = Field(0.5, gt=0.0, description="time constant of the speed's smoothing")
    edge_action_running_speed: float = Field(1.6, gt=0.0, description="standing heights per second from which a person runs")
    edge_action_running_min_s: float = Field(0.8, ge=0.0, description="that fast this long: running")
    edge_action_loiter_radius: float = Field(1.0, gt=0.0, description="staying within this many standing heights of one spot...")
    edge_action_loiter_s: float = Field(20.0, gt=0.0, description="...this long: loitering")
    edge_action_hands_margin: float = Field(0.1, ge=0.0, description="wrists above the shoulders by this share of the torso length")
    edge_action_hands_min_s: float = Field(0.5, ge=0.0, description="both hands up this long: hands_raised")
    edge_action_handover_s: float = Field(1.0, ge=0.0, description="a new track starting this soon after another ended nearby...")
    edge_action_handover_distance: float = Field(1.0, ge=0.0, description="...within this many standing heights carries on its state")
    edge_action_forget_s: float = Field(5.0, gt=0.0, description="a track not observed this long is forgotten")

    def action_thresholds(self) -> ActionThresholds:
        return ActionThresholds(**{name: getattr(self, ACTION_PREFIX + name) for name in ActionThresholds.model_fields})
