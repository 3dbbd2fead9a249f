"""What every detector promises: the Detector interface, its result type and input checks.

Frames are OpenCV images: uint8 arrays shaped (height, width, 3) in BGR channel order.
Boxes come back as float32 xyxy in the frame's own pixel coordinates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns

import numpy as np

from vision.detectors.coco_labels import COCO_LABELS


class InvalidFrameError(ValueError):
    """A frame a detector cannot take (wrong shape, dtype or size); callers count it as a drop."""


class ModelLoadError(ValueError):
    """A model file that is missing, is not ONNX, or has inputs/outputs no decoder understands."""


@dataclass(frozen=True, slots=True)
class Detections:
    """All objects found in one frame, best first.

    boxes: float32 [N, 4] x1, y1, x2, y2 in frame pixels; scores: float32 [N]; class_ids: int32 [N].
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.scores)
        if self.boxes.shape != (count, 4) or self.class_ids.shape != (count,):
            raise ValueError(
                f"Detections need boxes [N,4], scores [N] and class_ids [N]; got "
                f"{self.boxes.shape}, {self.scores.shape} and {self.class_ids.shape}."
            )

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int32),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            boxes=np.concatenate([part.boxes for part in parts]).astype(np.float32, copy=False),
            scores=np.concatenate([part.scores for part in parts]).astype(np.float32, copy=False),
            class_ids=np.concatenate([part.class_ids for part in parts]).astype(np.int32, copy=False),
        )

    def select(self, indices: np.ndarray) -> Detections:
        return Detections(self.boxes[indices], self.scores[indices], self.class_ids[indices])

    def of_class(self, class_id: int) -> Detections:
        return self.select(np.flatnonzero(self.class_ids == class_id))

    def labels(self, names: Sequence[str] = COCO_LABELS) -> list[str]:
        return [names[i] if 0 <= i < len(names) else str(int(i)) for i in self.class_ids]


@dataclass(slots=True)
class StageTiming:
    """Milliseconds spent on the last frame: preprocessing, session.run and decoding."""

    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.infer_ms + self.post_ms


@dataclass(slots=True)
class StageClock:
    """Splits one detect() call into stages without allocating per lap."""

    timing: StageTiming = field(default_factory=StageTiming)
    _last_ns: int = 0

    def start(self) -> None:
        self._last_ns = perf_counter_ns()

    def lap_ms(self) -> float:
        now = perf_counter_ns()
        elapsed = (now - self._last_ns) / 1e6
        self._last_ns = now
        return elapsed


def validate_frame(frame: object) -> np.ndarray:
    """Return the frame if it is a non-empty BGR uint8 (H, W, 3) array, else raise InvalidFrameError."""
    if not isinstance(frame, np.ndarray):
        raise InvalidFrameError(f"Frame must be a numpy array, got {type(frame).__name__}.")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidFrameError(
            f"Frame must be a colour image shaped (height, width, 3), got shape {frame.shape}."
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidFrameError(f"Frame is empty (shape {frame.shape}).")
    if frame.dtype != np.uint8:
        raise InvalidFrameError(f"Frame must be uint8, got {frame.dtype}.")
    return frame


class Detector(ABC):
    """An object detector that turns one BGR frame into Detections.

    Attributes every detector exposes: name (model name), input_size (width, height the model sees),
    providers (execution providers that actually run it), labels (class names) and last_timing.
    A detector reuses its input buffers between frames: give each thread its own instance.
    """

    name: str
    input_size: tuple[int, int]
    providers: list[str]
    labels: tuple[str, ...]

    @property
    @abstractmethod
    def last_timing(self) -> StageTiming:
        """Milliseconds the last detect() spent on preprocessing, the model and decoding."""

    @abstractmethod
    def detect(self, frame: np.ndarray) -> Detections:
        """Find objects in one frame; raises InvalidFrameError for a frame it cannot take."""

    def __call__(self, frame: np.ndarray) -> Detections:
        return self.detect(frame)

    def describe(self) -> str:
        width, height = self.input_size
        return f"{self.name} ({width}x{height}) on {', '.join(self.providers)}"


class StreamDetector(Detector):
    """A detector that carries state from one frame to the next, separately for each stream (a camera or a crop).

    Callers that know the stream call :meth:`detect_stream`; :meth:`detect` is one default stream.
    """

    @abstractmethod
    def detect_stream(self, stream_key: str, frame: np.ndarray) -> Detections:
        """This stream's next frame: updates the stream's state, never another stream's."""

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detect_stream("default", frame)
