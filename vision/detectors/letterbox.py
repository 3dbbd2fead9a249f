"""Centred letterbox: scale a frame to fit a square canvas keeping its aspect ratio, pad the rest."""

from __future__ import annotations

import cv2
import numpy as np


class Letterbox:
    """Owns one uint8 canvas reused for every frame; re-pads only when the frame size changes."""

    def __init__(self, size: int, pad_value: int) -> None:
        self.size = size
        self.pad_value = pad_value
        self.canvas = np.full((size, size, 3), pad_value, np.uint8)
        self._frame_shape: tuple[int, int] = (0, 0)
        self._scale = 1.0
        self._offset_x = 0
        self._offset_y = 0
        self._resized = self.canvas  # replaced on the first frame

    def place(self, frame: np.ndarray) -> np.ndarray:
        """Return the canvas holding the frame, scaled and centred (BGR, like the frame)."""
        height, width = frame.shape[:2]
        if (height, width) != self._frame_shape:
            self._fit(height, width)
        target = self._resized.shape[1], self._resized.shape[0]
        cv2.resize(frame, target, dst=self._resized, interpolation=cv2.INTER_LINEAR)
        window = self.canvas[
            self._offset_y : self._offset_y + target[1], self._offset_x : self._offset_x + target[0]
        ]
        np.copyto(window, self._resized)
        return self.canvas

    def _fit(self, height: int, width: int) -> None:
        self._frame_shape = (height, width)
        self._scale = self.size / max(height, width)
        scaled_width = max(1, min(self.size, round(width * self._scale)))
        scaled_height = max(1, min(self.size, round(height * self._scale)))
        self._offset_x = (self.size - scaled_width) // 2
        self._offset_y = (self.size - scaled_height) // 2
        self._resized = np.empty((scaled_height, scaled_width, 3), np.uint8)
        self.canvas[:] = self.pad_value

    def to_frame(self, boxes: np.ndarray, frame_width: int, frame_height: int) -> np.ndarray:
        """Map xyxy boxes from canvas pixels back to frame pixels, clipped to the frame (in place)."""
        boxes[:, 0::2] -= self._offset_x
        boxes[:, 1::2] -= self._offset_y
        boxes /= self._scale
        np.clip(boxes[:, 0::2], 0, frame_width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, frame_height, out=boxes[:, 1::2])
        return boxes
