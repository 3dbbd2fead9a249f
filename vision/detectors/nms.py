"""Class-wise non-maximum suppression over Detections (OpenCV's batched NMS, no Python loops)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from vision.detectors.base import Detections

# OpenCV's stubs declare Python sequences, but the binding takes numpy arrays as they are: no
# conversion to lists on the per-frame path.
_nms_boxes_batched: Callable[..., Any] = cv2.dnn.NMSBoxesBatched


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    xywh = boxes.copy()
    xywh[:, 2:] -= boxes[:, :2]
    return xywh


def class_wise_nms(
    detections: Detections, iou_threshold: float, max_detections: int = 300
) -> Detections:
    """Keep the best box among same-class boxes overlapping more than iou_threshold; best first."""
    if len(detections) == 0:
        return detections
    found = _nms_boxes_batched(
        xyxy_to_xywh(detections.boxes),
        detections.scores,
        detections.class_ids,
        0.0,
        iou_threshold,
        top_k=max_detections,
    )
    kept = np.asarray(found, dtype=np.int64).reshape(-1)
    order = np.argsort(-detections.scores[kept], kind="stable")
    return detections.select(kept[order])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against each row of boxes [N, 4]."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return intersection / np.maximum(area + areas - intersection, 1e-9)
