"""Edge inference settings (HYBRIDCAM_EDGE_*), on top of the common ones."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shared.settings import CommonSettings


class EdgeInferSettings(CommonSettings):
    edge_model: str = Field("nanodet", description="model name in models/ (nanodet, centernet) or a path to an .onnx file")
    edge_score_threshold: float = Field(0.35, gt=0.0, lt=1.0)
    edge_detector: dict[str, Any] | None = Field(
        None, description='detector settings as JSON keyed by type, e.g. {"type": "yolo", "model": "/models/yolo11n.onnx"} '
        "(types: auto, nanodet, yolo, centernet, tiled; see models/README.md); when set, EDGE_MODEL and EDGE_SCORE_THRESHOLD are not used")
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
