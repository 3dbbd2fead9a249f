"""Fits what the sampler sends into the site's uplink budget.

Each frame to send is encoded at the best step of a ladder (full size at the configured quality
first, then lower qualities, then shrunk by 2 and by 4) whose JPEG fits the bytes the budget holds
at that moment (a byte token bucket refilled in capture time, shared/uplink.py). The size of a
step is predicted from the bytes per pixel it took last time, so usually one encode is enough. A
frame no step fits is not sent: the caller counts it (``skipped_uplink``). Every step chosen and
every byte saved against the configured quality is counted.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from services.sampler.encoding import EncodedFrame, FrameEncoder
from shared.frame_ring import encode_jpeg
from shared.uplink import ByteBudget, UplinkQuality, shrunk_size

FALLBACK_QUALITIES = (70, 55, 40)
SHRINK_STEPS = ((2, 75), (2, 55), (2, 40), (4, 60), (4, 40), (4, 25))


def default_ladder(quality: int) -> list[UplinkQuality]:
    """Best first: the configured quality at full size, lower qualities, then 1/2 and 1/4 size."""
    steps = [UplinkQuality(1, quality)] + [UplinkQuality(1, q) for q in FALLBACK_QUALITIES if q < quality]
    return steps + [UplinkQuality(f, min(q, quality)) for f, q in SHRINK_STEPS]


class UplinkFitter:
    """The best ladder step that fits the budget now, or None."""

    def __init__(self, budget: ByteBudget, encoder: FrameEncoder, ladder: list[UplinkQuality] | None = None) -> None:
        self.budget = budget
        self.encoder = encoder
        self.ladder = ladder or default_ladder(encoder.quality)
        self.counters: Counter[str] = Counter()
        self._bytes_per_pixel: dict[UplinkQuality, float] = {}
        self.last_quality: UplinkQuality | None = None

    def encode(self, frame: np.ndarray, ts: float) -> EncodedFrame | None:
        """The frame as it fits the uplink now (bytes taken from the budget), or None when nothing fits."""
        image = self.encoder.fit_side(frame)
        available = self.budget.refill(ts)
        full_estimate = self._estimate(self.ladder[0], image)
        for step in self.ladder:
            estimate = self._estimate(step, image)
            if estimate is not None and estimate > available:
                continue
            encoded = self._encode(image, step)
            if len(encoded.jpeg) > available:
                continue
            self.budget.spend(len(encoded.jpeg))
            self.counters[f"uplink_sent_x{step.factor}_q{step.jpeg_quality}"] += 1
            self.counters["uplink_bytes"] += len(encoded.jpeg)
            if full_estimate is not None:
                self.counters["uplink_bytes_saved"] += max(0, int(full_estimate) - len(encoded.jpeg))
            self.last_quality = step
            return encoded
        self.counters["uplink_over_budget"] += 1
        return None

    def _encode(self, image: np.ndarray, step: UplinkQuality) -> EncodedFrame:
        height, width = image.shape[:2]
        small = image if step.factor == 1 else cv2.resize(image, shrunk_size(width, height, step.factor), interpolation=cv2.INTER_AREA)
        jpeg = encode_jpeg(small, step.jpeg_quality)
        self._bytes_per_pixel[step] = len(jpeg) / (small.shape[0] * small.shape[1])
        return EncodedFrame(jpeg, int(small.shape[1]), int(small.shape[0]), step.factor, step.jpeg_quality)

    def _estimate(self, step: UplinkQuality, image: np.ndarray) -> float | None:
        bpp = self._bytes_per_pixel.get(step)
        if bpp is None:
            return None
        width, height = shrunk_size(image.shape[1], image.shape[0], step.factor)
        return bpp * width * height
