"""Sampled frame -> JPEG within the cloud's limits.

Rekognition takes images up to 5 MB as bytes. A frame is first shrunk to ``max_side`` (its
longest side), encoded at the configured quality, and while the JPEG is still over
``max_jpeg_bytes`` the quality is lowered (down to 40), then the size halved. A record that
is still over the 1 MiB Kinesis record limit travels by claim check (kinesis_sender.ClaimCheck).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from shared.frame_ring import encode_jpeg

LOWEST_QUALITY = 40
QUALITY_STEP = 15


@dataclass(frozen=True)
class EncodedFrame:
    jpeg: bytes
    width: int
    height: int
    shrink_factor: int = 1
    """1 unless the uplink budget shrank it (uplink_fit.py)"""
    quality: int = 0


class FrameEncoder:
    def __init__(self, quality: int = 85, max_side: int = 1920, max_jpeg_bytes: int = 5 * 1024 * 1024) -> None:
        self.quality = quality
        self.max_side = max_side
        self.max_jpeg_bytes = max_jpeg_bytes

    def encode(self, frame: np.ndarray) -> EncodedFrame:
        """JPEG at the configured quality, shrunk until it fits max_jpeg_bytes."""
        image = self.fit_side(frame)
        quality = self.quality
        jpeg = encode_jpeg(image, quality)
        while len(jpeg) > self.max_jpeg_bytes:
            if quality > LOWEST_QUALITY:
                quality = max(LOWEST_QUALITY, quality - QUALITY_STEP)
            else:
                image = cv2.resize(image, (max(16, image.shape[1] // 2), max(16, image.shape[0] // 2)), interpolation=cv2.INTER_AREA)
            jpeg = encode_jpeg(image, quality)
        return EncodedFrame(jpeg, int(image.shape[1]), int(image.shape[0]), 1, quality)

    def fit_side(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        longest = max(height, width)
        if not self.max_side or longest <= self.max_side:
            return frame
        scale = self.max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
