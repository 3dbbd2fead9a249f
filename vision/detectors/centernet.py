"""CenterNet (MobileNetV3) decoder: NHWC RGB 0-255 letterboxed input, output [1,K,6] = x1,y1,x2,y2,score,class.

The model already picks its top K peaks; we undo the letterbox, threshold and add class-wise NMS
(CenterNet's peak picking does not suppress overlapping boxes of the same object at different scales).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import Field

from vision.detectors.base import Detections
from vision.detectors.coco_labels import COCO_LABELS
from vision.detectors.letterbox import Letterbox
from vision.detectors.nms import class_wise_nms
from vision.detectors.onnx_detector import OnnxDetector
from vision.detectors.onnx_session import TensorSpec
from vision.detectors.plugin import DetectorPlugin, OnnxModelConfig, register_detector

DETECTION_FIELDS = 6  # x1, y1, x2, y2, score, class id


@dataclass(frozen=True)
class CenterNetLayout:
    input_size: int
    detections_output: int


def match_centernet_layout(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> CenterNetLayout | None:
    """Recognise an NHWC square RGB input and one [1,K,6] detections output."""
    if len(inputs) != 1:
        return None
    shape = inputs[0].shape
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        return None
    for index, output in enumerate(outputs):
        dims = output.shape
        if len(dims) == 3 and dims[2] == DETECTION_FIELDS:
            return CenterNetLayout(shape[1], index)
    return None


class CenterNetDetector(OnnxDetector):
    def __init__(
        self,
        session: ort.InferenceSession,
        model_path: Path,
        layout: CenterNetLayout,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        labels: Sequence[str] = COCO_LABELS,
    ) -> None:
        size = layout.input_size
        super().__init__(
            session,
            model_path,
            input_buffer=np.zeros((1, size, size, 3), np.float32),
            input_size=(size, size),
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            labels=labels,
        )
        self.layout = layout
        # Only the detections output is decoded; asking for the heatmaps too would copy them out per frame.
        self.output_names = [self.output_names[layout.detections_output]]
        self._letterbox = Letterbox(size, pad_value=0)

    def _prepare(self, frame: np.ndarray) -> None:
        canvas = self._letterbox.place(frame)
        # BGR uint8 -> RGB float32 in one pass straight into the input tensor.
        np.copyto(self.input_buffer[0], canvas[:, :, ::-1], casting="unsafe")

    def _decode(self, outputs: list[np.ndarray], frame_width: int, frame_height: int) -> Detections:
        rows = outputs[0][0]
        rows = rows[rows[:, 4] >= self.score_threshold]
        boxes = self._letterbox.to_frame(rows[:, :4].astype(np.float32), frame_width, frame_height)
        candidates = Detections(
            boxes=boxes,
            scores=rows[:, 4].astype(np.float32),
            class_ids=rows[:, 5].astype(np.int32),
        )
        return class_wise_nms(candidates, self.iou_threshold, self.max_detections)


class CenterNetConfig(OnnxModelConfig):
    """CenterNet with its decoding inside the graph: an NHWC input and one [1,K,6] output."""

    type: Literal["centernet"] = "centernet"
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)


def _create_centernet(session: ort.InferenceSession, path: Path, layout: CenterNetLayout, config: CenterNetConfig) -> CenterNetDetector:
    return CenterNetDetector(session, path, layout, config.score_threshold, config.iou_threshold, config.max_detections,
        config.labels or COCO_LABELS)


def _match_centernet(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], config: OnnxModelConfig) -> CenterNetLayout | None:
    return match_centernet_layout(inputs, outputs)


register_detector(DetectorPlugin("centernet", CenterNetConfig, layout="CenterNet (NHWC input, [1,K,6] detections)",
                                  match=_match_centernet, create=_create_centernet))
