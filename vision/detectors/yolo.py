"""Ultralytics YOLOv8-11 export decoder: one output [1, 4+C, N] (or transposed [1, N, 4+C]).

Rows are cx, cy, w, h in input pixels followed by C class scores (already sigmoid, no objectness).
Preprocessing is Ultralytics': centred letterbox padded with 114, RGB, scaled to 0-1, NCHW.
NMS-included ("end2end", [1, K, 6]) exports are not this layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from vision.detectors.base import Detections
from vision.detectors.coco_labels import COCO_LABELS
from vision.detectors.letterbox import Letterbox
from vision.detectors.nms import class_wise_nms
from vision.detectors.onnx_detector import OnnxDetector
from vision.detectors.onnx_session import TensorSpec
from vision.detectors.plugin import DetectorPlugin, OnnxModelConfig, register_detector

BOX_FIELDS = 4
DEFAULT_INPUT_SIZE = 640
LETTERBOX_PAD = 114
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class YoloLayout:
    input_size: int
    num_classes: int
    features_first: bool  # True for [1, 4+C, N], False for [1, N, 4+C]


def match_yolo_layout(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], input_size: int | None = None
) -> YoloLayout | None:
    """Recognise an NCHW RGB input and a single [1, 4+C, N] or [1, N, 4+C] output."""
    if len(inputs) != 1 or len(outputs) != 1:
        return None
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1] != 3:
        return None
    size = shape[2] if isinstance(shape[2], int) and shape[2] == shape[3] else None
    size = size or input_size or DEFAULT_INPUT_SIZE
    dims = outputs[0].shape
    if len(dims) != 3:
        return None
    rows, columns = dims[1], dims[2]
    # With dynamic axes only the feature count (4 + C) is a fixed number.
    if isinstance(rows, int) and isinstance(columns, int):
        features_first = rows < columns
    elif isinstance(rows, int) or isinstance(columns, int):
        features_first = isinstance(rows, int)
    else:
        return None
    features = rows if features_first else columns
    anchors = columns if features_first else rows
    if not isinstance(features, int) or features <= BOX_FIELDS or looks_like_end2end(features, anchors, size):
        return None
    return YoloLayout(size, features - BOX_FIELDS, features_first)


def looks_like_end2end(features: int, anchors: int | str | None, size: int) -> bool:
    """[1, K, 6] with K not the anchor count of a P3-P5 head is x1,y1,x2,y2,score,class, not 2 classes."""
    p3_to_p5_anchors = 21 * (size // 32) ** 2  # (s/8)^2 + (s/16)^2 + (s/32)^2
    return features == BOX_FIELDS + 2 and anchors != p3_to_p5_anchors


class YoloDetector(OnnxDetector):
    def __init__(
        self,
        session: ort.InferenceSession,
        model_path: Path,
        layout: YoloLayout,
        score_threshold: float = 0.35,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        labels: Sequence[str] = COCO_LABELS,
    ) -> None:
        size = layout.input_size
        super().__init__(
            session,
            model_path,
            input_buffer=np.zeros((1, 3, size, size), np.float32),
            input_size=(size, size),
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            labels=labels,
        )
        self.layout = layout
        self._letterbox = Letterbox(size, pad_value=LETTERBOX_PAD)
        self._to_unit = np.float32(1.0 / 255.0)

    def _prepare(self, frame: np.ndarray) -> None:
        canvas = self._letterbox.place(frame)
        rgb_planes = canvas[:, :, ::-1].transpose(2, 0, 1)
        np.multiply(rgb_planes, self._to_unit, out=self.input_buffer[0])

    def _decode(self, outputs: list[np.ndarray], frame_width: int, frame_height: int) -> Detections:
        features = outputs[0][0] if self.layout.features_first else outputs[0][0].T
        class_ids, anchors = np.nonzero(features[BOX_FIELDS:] > self.score_threshold)
        scores = features[BOX_FIELDS + class_ids, anchors]
        if scores.size > MAX_CANDIDATES:
            best = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            class_ids, anchors, scores = class_ids[best], anchors[best], scores[best]
        centre_size = features[:BOX_FIELDS, anchors].T.astype(np.float32)
        half_size = centre_size[:, 2:] / 2
        boxes = np.concatenate([centre_size[:, :2] - half_size, centre_size[:, :2] + half_size], axis=1)
        candidates = Detections(
            boxes=self._letterbox.to_frame(boxes, frame_width, frame_height),
            scores=scores.astype(np.float32),
            class_ids=class_ids.astype(np.int32),
        )
        return class_wise_nms(candidates, self.iou_threshold, self.max_detections)


class YoloConfig(OnnxModelConfig):
    """Ultralytics YOLOv8-11 exports: an NCHW RGB input and one [1,4+C,N] or [1,N,4+C] output."""

    type: Literal["yolo"] = "yolo"


def _create_yolo(session: ort.InferenceSession, path: Path, layout: YoloLayout, config: YoloConfig) -> YoloDetector:
    return YoloDetector(session, path, layout, config.score_threshold, config.iou_threshold, config.max_detections,
        config.labels or COCO_LABELS)


def _match_yolo(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], config: OnnxModelConfig) -> YoloLayout | None:
    return match_yolo_layout(inputs, outputs, config.input_size)


register_detector(DetectorPlugin("yolo", YoloConfig, layout="YOLOv8-11 (NCHW input, one [1,4+C,N] or [1,N,4+C] output)",
                                  match=_match_yolo, create=_create_yolo))
