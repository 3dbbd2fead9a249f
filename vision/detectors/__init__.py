"""Object detectors for the edge (NanoDet, YOLO exports) and the cloud tier (CenterNet + NanoDet tiles)."""

from vision.detectors.base import (
    Detection,
    Detections,
    Detector,
    InvalidFrameError,
    ModelLoadError,
    StageTiming,
)
from vision.detectors.coco_labels import COCO_LABELS
from vision.detectors.registry import load_detector

__all__ = [
    "COCO_LABELS",
    "Detection",
    "Detections",
    "Detector",
    "InvalidFrameError",
    "ModelLoadError",
    "StageTiming",
    "load_detector",
]
