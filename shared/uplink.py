"""What a thin uplink lets through, and what it does to a picture.

The sampler fits what it sends into the site's uplink budget (a byte token bucket), and shrinks and
compresses frames to do so. The patch sampler on the edge and the super-resolution trainer in the
cloud must agree on exactly one degradation, ``degrade``: shrink by an integer factor (area
interpolation), then JPEG at a quality. The trainer learns to undo it; the bench measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from shared.frame_ring import encode_jpeg


@dataclass(frozen=True, slots=True)
class UplinkQuality:
    """How a frame crosses the uplink: shrunk by ``factor`` (1 = full size), JPEG at ``jpeg_quality``."""

    factor: int
    jpeg_quality: int

    def __post_init__(self) -> None:
        if self.factor < 1 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError("an uplink quality needs a shrink factor >= 1 and a JPEG quality 1-100")

    def describe(self) -> str:
        return f"1/{self.factor} size, JPEG {self.jpeg_quality}" if self.factor > 1 else f"full size, JPEG {self.jpeg_quality}"


def shrunk_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """Size after shrinking by ``factor``; both sides at least 1 pixel."""
    return max(1, width // factor), max(1, height // factor)


def degrade(image: np.ndarray, quality: UplinkQuality) -> tuple[np.ndarray, bytes]:
    """The picture the cloud receives (decoded) and the bytes that crossed the uplink."""
    height, width = image.shape[:2]
    small = image
    if quality.factor > 1:
        small = cv2.resize(image, shrunk_size(width, height, quality.factor), interpolation=cv2.INTER_AREA)
    jpeg = encode_jpeg(small, quality.jpeg_quality)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("the uplink JPEG could not be decoded")
    return decoded, jpeg


def upscale_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The baseline every super-resolution figure is compared with."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two 8-bit pictures of one size (inf when identical)."""
    if reference.shape != test.shape:
        raise ValueError(f"PSNR needs pictures of one size, got {reference.shape} and {test.shape}")
    mse = float(np.mean((reference.astype(np.float32) - test.astype(np.float32)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Structural similarity of the grey pictures (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""
    if reference.shape != test.shape:
        raise ValueError(f"SSIM needs pictures of one size, got {reference.shape} and {test.shape}")
    a = _grey(reference).astype(np.float64)
    b = _grey(test).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


class ByteBudget:
    """Bytes the uplink allows: ``rate`` per second, at most ``burst`` saved up. Time is capture time."""

    def __init__(self, bytes_per_s: float, burst_s: float = 2.0) -> None:
        if bytes_per_s <= 0 or burst_s <= 0:
            raise ValueError("an uplink budget needs a positive rate and burst")
        self.rate = bytes_per_s
        self.burst = bytes_per_s * burst_s
        self.tokens = self.burst
        self.updated: float | None = None

    def refill(self, now: float) -> float:
        """Bytes available now."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        return self.tokens

    def spend(self, size: int) -> None:
        """Take ``size`` bytes (the balance may go below zero: what was sent was sent)."""
        self.tokens -= size


def kbit_per_s_to_bytes(kbit_per_s: float) -> float:
    return kbit_per_s * 1000.0 / 8.0
