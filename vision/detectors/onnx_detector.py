"""Shared skeleton of the ONNX detectors: check the frame, fill the input buffer, run, decode, time each stage."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vision.detectors.base import Detections, Detector, StageClock, StageTiming, validate_frame
from vision.detectors.coco_labels import COCO_LABELS


class OnnxDetector(Detector):
    """A detector around one InferenceSession with one image input.

    Subclasses fill self.input_buffer (allocated once) in _prepare and turn raw outputs into
    Detections in _decode.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        model_path: Path,
        input_buffer: np.ndarray,
        input_size: tuple[int, int],
        score_threshold: float,
        iou_threshold: float,
        max_detections: int,
        labels: Sequence[str] = COCO_LABELS,
    ) -> None:
        self.session = session
        self.model_path = model_path
        self.name = model_path.stem
        self.input_name = session.get_inputs()[0].name
        self.output_names = [arg.name for arg in session.get_outputs()]
        self.input_buffer = input_buffer
        self.input_size = input_size
        self.providers = list(session.get_providers())
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.labels = tuple(labels)
        self._clock = StageClock()
        self._feed = {self.input_name: self.input_buffer}

    @property
    def last_timing(self) -> StageTiming:
        return self._clock.timing

    def detect(self, frame: np.ndarray) -> Detections:
        clock = self._clock
        clock.start()
        frame = validate_frame(frame)
        self._prepare(frame)
        clock.timing.pre_ms = clock.lap_ms()
        outputs = self.session.run(self.output_names, self._feed)
        clock.timing.infer_ms = clock.lap_ms()
        detections = self._decode(outputs, frame.shape[1], frame.shape[0])
        clock.timing.post_ms = clock.lap_ms()
        return detections

    @abstractmethod
    def _prepare(self, frame: np.ndarray) -> None:
        """Write the frame into self.input_buffer in the model's layout."""

    @abstractmethod
    def _decode(self, outputs: list[np.ndarray], frame_width: int, frame_height: int) -> Detections:
        """Turn session outputs into Detections in frame pixels."""
