"""How far a faster detector (int8, another back-end) agrees with a reference detector on the same frames.

The reference's person boxes are the truth: recall is the share of them the candidate finds again
(IoU >= 0.5, one-to-one, best score first), precision the share of the candidate's boxes that match
one, and the count difference the candidate's boxes minus the reference's, per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.detectors.base import Detections, Detector
from vision.detectors.coco_labels import PERSON_CLASS_ID
from vision.detectors.nms import box_iou

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    frames: int
    reference_boxes: int
    candidate_boxes: int
    matched: int
    abs_count_difference: int

    @property
    def recall(self) -> float:
        return self.matched / self.reference_boxes if self.reference_boxes else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.candidate_boxes if self.candidate_boxes else 1.0

    @property
    def count_difference_per_frame(self) -> float:
        return (self.candidate_boxes - self.reference_boxes) / max(self.frames, 1)

    @property
    def abs_count_difference_per_frame(self) -> float:
        return self.abs_count_difference / max(self.frames, 1)

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            self.frames + other.frames,
            self.reference_boxes + other.reference_boxes,
            self.candidate_boxes + other.candidate_boxes,
            self.matched + other.matched,
            self.abs_count_difference + other.abs_count_difference,
        )

    def describe(self) -> str:
        return (
            f"recall {self.recall:.3f}, precision {self.precision:.3f}, "
            f"boxes {self.candidate_boxes} vs {self.reference_boxes} "
            f"({self.count_difference_per_frame:+.2f} a frame, |diff| {self.abs_count_difference_per_frame:.2f})"
        )


NO_FRAMES = Agreement(0, 0, 0, 0, 0)


def matched_pairs(reference: np.ndarray, candidate: np.ndarray, iou_threshold: float = MATCH_IOU) -> int:
    """One-to-one greedy matches between two [N,4] box arrays (each given best first)."""
    if len(reference) == 0 or len(candidate) == 0:
        return 0
    free = np.ones(len(candidate), bool)
    matched = 0
    for box in reference:
        overlaps = np.where(free, box_iou(box, candidate), 0.0)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold:
            free[best] = False
            matched += 1
    return matched


def agreement(reference: Detections, candidate: Detections, class_id: int = PERSON_CLASS_ID) -> Agreement:
    ref_boxes = reference.of_class(class_id).boxes
    cand_boxes = candidate.of_class(class_id).boxes
    return Agreement(1, len(ref_boxes), len(cand_boxes), matched_pairs(ref_boxes, cand_boxes),
                     abs(len(cand_boxes) - len(ref_boxes)))


def agreement_on_frames(reference: Detector, candidate: Detector, frames: Iterable[np.ndarray]) -> Agreement:
    total = NO_FRAMES
    for frame in frames:
        total = total + agreement(reference.detect(frame), candidate.detect(frame))
    return total


def read_clip_frames(path: Path, limit: int | None = None, step: int = 1) -> list[np.ndarray]:
    """Decoded BGR frames of a clip (every `step`-th, at most `limit`)."""
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while limit is None or len(frames) < limit:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(frame)
            index += 1
    finally:
        capture.release()
    return frames


def detections_per_frame(detector: Detector, frames: Sequence[np.ndarray]) -> list[Detections]:
    return [detector.detect(frame) for frame in frames]
