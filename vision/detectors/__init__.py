"""Object detectors for the edge (NanoDet, YOLO exports) and the cloud tier (CenterNet + NanoDet tiles).

A :class:`Detections` is the set of boxes found in one frame (numpy arrays); one box on the bus
is a :class:`shared.schemas.Detection`.
"""

from vision.detectors.base import Detections, Detector, InvalidFrameError, ModelLoadError, StageTiming
from vision.detectors.coco_labels import COCO_LABELS
from vision.detectors.plugin import AutoConfig, DetectorConfig, DetectorPlugin, register_detector
from vision.detectors.registry import build_detector, load_detector, parse_detector_config

__all__ = [
    "COCO_LABELS",
    "AutoConfig",
    "DetectorConfig",
    "DetectorPlugin",
    "Detections",
    "Detector",
    "InvalidFrameError",
    "ModelLoadError",
    "StageTiming",
    "build_detector",
    "load_detector",
    "parse_detector_config",
    "register_detector",
]
