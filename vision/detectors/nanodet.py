"""NanoDet (GFL/DFL head) decoder: per stride one class-score output [1,N,C] and one box-distribution output [1,N,4*bins].

Preprocessing matches the model's training: plain stretch to the input size, BGR, (x - mean) / std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnxruntime as ort

from vision.detectors.base import Detections
from vision.detectors.coco_labels import COCO_LABELS
from vision.detectors.nms import class_wise_nms
from vision.detectors.onnx_detector import OnnxDetector
from vision.detectors.onnx_session import TensorSpec
from vision.detectors.plugin import DetectorPlugin, OnnxModelConfig, register_detector

BGR_MEAN = np.array([103.53, 116.28, 123.675], np.float32)
BGR_STD = np.array([57.375, 57.12, 58.395], np.float32)
# Cap on (cell, class) candidates decoded per frame, so a very low threshold cannot blow up NMS time.
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class NanoDetLevel:
    score_output: int
    box_output: int
    grid: int
    stride: float


@dataclass(frozen=True)
class NanoDetLayout:
    input_size: int
    num_classes: int
    bins: int
    levels: tuple[NanoDetLevel, ...]


def match_nanodet_layout(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], num_classes: int = len(COCO_LABELS)
) -> NanoDetLayout | None:
    """Recognise NCHW square input plus pairs of [1,N,C] / [1,N,4*bins] outputs on square grids."""
    if len(inputs) != 1 or len(outputs) < 2 or len(outputs) % 2:
        return None
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
        return None
    input_size = shape[2]
    by_cells: dict[int, dict[int, int]] = {}
    for index, output in enumerate(outputs):
        dims = output.shape
        if len(dims) != 3 or not isinstance(dims[1], int) or not isinstance(dims[2], int):
            return None
        by_cells.setdefault(dims[1], {})[dims[2]] = index
    box_widths = {width for pair in by_cells.values() for width in pair if width != num_classes}
    if len(box_widths) != 1:
        return None
    box_width = box_widths.pop()
    levels = []
    for cells, pair in sorted(by_cells.items(), reverse=True):
        grid = math.isqrt(cells)
        if set(pair) != {num_classes, box_width} or grid * grid != cells or box_width % 4:
            return None
        levels.append(NanoDetLevel(pair[num_classes], pair[box_width], grid, input_size / grid))
    return NanoDetLayout(input_size, num_classes, box_width // 4, tuple(levels))


class NanoDetDetector(OnnxDetector):
    def __init__(
        self,
        session: ort.InferenceSession,
        model_path: Path,
        layout: NanoDetLayout,
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
        self._resized = np.zeros((size, size, 3), np.uint8)
        # (x - mean) / std == x * (1 / std) - mean / std: one multiply and one subtract, in place.
        self._channel_scale = (1.0 / BGR_STD).reshape(3, 1, 1)
        self._channel_offset = (BGR_MEAN / BGR_STD).reshape(3, 1, 1)
        self._bin_values = np.arange(layout.bins, dtype=np.float32)
        self._cell_centres = [self._cell_centre_grid(level) for level in layout.levels]

    @staticmethod
    def _cell_centre_grid(level: NanoDetLevel) -> np.ndarray:
        """[N, 4] = (cx, cy, cx, cy) of each cell in input pixels, row-major like the outputs."""
        cells = np.arange(level.grid * level.grid)
        centre_x = (cells % level.grid + 0.5) * level.stride
        centre_y = (cells // level.grid + 0.5) * level.stride
        return np.stack([centre_x, centre_y, centre_x, centre_y], axis=1).astype(np.float32)

    def _prepare(self, frame: np.ndarray) -> None:
        cv2.resize(frame, self.input_size, dst=self._resized, interpolation=cv2.INTER_LINEAR)
        planes = self.input_buffer[0]
        np.multiply(self._resized.transpose(2, 0, 1), self._channel_scale, out=planes)
        np.subtract(planes, self._channel_offset, out=planes)

    def _decode(self, outputs: list[np.ndarray], frame_width: int, frame_height: int) -> Detections:
        found = [
            self._decode_level(outputs, level, centres)
            for level, centres in zip(self.layout.levels, self._cell_centres, strict=True)
        ]
        candidates = Detections.concatenate([part for part in found if part is not None])
        if len(candidates) > MAX_CANDIDATES:
            best = np.argpartition(-candidates.scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            candidates = candidates.select(best)
        size = self.layout.input_size
        scale = np.array(
            [frame_width / size, frame_height / size, frame_width / size, frame_height / size],
            np.float32,
        )
        candidates.boxes[:] *= scale
        np.clip(candidates.boxes[:, 0::2], 0, frame_width, out=candidates.boxes[:, 0::2])
        np.clip(candidates.boxes[:, 1::2], 0, frame_height, out=candidates.boxes[:, 1::2])
        return class_wise_nms(candidates, self.iou_threshold, self.max_detections)

    def _decode_level(
        self, outputs: list[np.ndarray], level: NanoDetLevel, centres: np.ndarray
    ) -> Detections | None:
        scores = outputs[level.score_output][0]
        cells, class_ids = np.nonzero(scores > self.score_threshold)
        if cells.size == 0:
            return None
        logits = outputs[level.box_output][0][cells].reshape(-1, 4, self.layout.bins)
        logits -= logits.max(axis=2, keepdims=True)
        weights = np.exp(logits, out=logits)
        distances = (weights @ self._bin_values) / weights.sum(axis=2)
        distances *= level.stride
        distances[:, :2] *= -1.0  # left/top lie before the centre, right/bottom after it
        return Detections(
            boxes=centres[cells] + distances,
            scores=scores[cells, class_ids],
            class_ids=class_ids.astype(np.int32),
        )


class NanoDetConfig(OnnxModelConfig):
    """NanoDet-Plus: a square NCHW input and score/box-distribution output pairs per stride."""

    type: Literal["nanodet"] = "nanodet"


def _create_nanodet(session: ort.InferenceSession, path: Path, layout: NanoDetLayout, config: NanoDetConfig) -> NanoDetDetector:
    return NanoDetDetector(session, path, layout, config.score_threshold, config.iou_threshold, config.max_detections,
        config.labels or COCO_LABELS)


def _match_nanodet(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], config: OnnxModelConfig) -> NanoDetLayout | None:
    return match_nanodet_layout(inputs, outputs, config.num_classes or len(config.labels or COCO_LABELS))


register_detector(DetectorPlugin("nanodet", NanoDetConfig, layout="NanoDet (NCHW input, [1,N,C] + [1,N,4*bins] per stride)",
                                  match=_match_nanodet, create=_create_nanodet))
