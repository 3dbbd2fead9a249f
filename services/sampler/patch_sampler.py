"""The patch sampler (LiveNAS): the pieces of a frame that the uplink hurts most, at full quality.

Random candidate patches, aligned to the JPEG blocks of the shrunk picture so that a patch degrades
as its part of the frame does, are shrunk and compressed exactly as the uplink carries frames
(shared/uplink.py), upscaled again, and their distortion (mean squared error against the original)
measured; the frame's distortion is their mean. Patches that lose more than the frame as a whole are
the informative ones: the most distorted of them go to the cloud's trainer at full quality, with their
position and capture time, at most ``patches_per_s`` a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.frame_ring import encode_jpeg
from shared.uplink import UplinkQuality, degrade, upscale_bicubic

PATCH_JPEG_QUALITY = 95
JPEG_BLOCK = 16  # a 4:2:0 JPEG's block, in pixels of the shrunk picture


@dataclass(frozen=True, slots=True)
class ChosenPatch:
    x: int
    y: int
    pixels: np.ndarray
    distortion: float
    """the patch's mean squared error after the uplink, as a multiple of the whole frame's"""


@dataclass(frozen=True, slots=True)
class PatchChoice:
    frame_distortion: float
    candidates: int
    informative: int
    """candidates more distorted than the frame"""
    patches: list[ChosenPatch]


class PatchSampler:
    """Chooses, at a bounded rate, the most informative patches of the frames it is offered."""

    def __init__(self, quality: UplinkQuality, patch_px: int = 64, candidates: int = 48,
                 patches_per_s: float = 10.0, per_frame: int = 5, seed: int = 0) -> None:
        step = JPEG_BLOCK * quality.factor
        if patch_px < step or patch_px % step:
            raise ValueError(f"patches must be a multiple of {step} px at 1/{quality.factor} size (JPEG blocks)")
        if patches_per_s <= 0 or per_frame < 1 or candidates < per_frame:
            raise ValueError("the patch sampler needs a positive rate and at least as many candidates as patches per frame")
        self.quality = quality
        self.patch_px = patch_px
        self.grid = step
        self.candidates = candidates
        self.patches_per_s = patches_per_s
        self.per_frame = per_frame
        self._rng = np.random.default_rng(seed)
        self._next_ts: float | None = None

    def due(self, ts: float) -> bool:
        """Whether a frame captured at ``ts`` should be examined (keeps the rate without looking at pixels)."""
        return self._next_ts is None or ts >= self._next_ts

    def choose(self, frame: np.ndarray, ts: float) -> PatchChoice:
        """The informative patches of ``frame``; the rate clock moves on by what was chosen.

        Only the candidates are degraded, each on its own: aligned to the shrunk picture's JPEG blocks
        and shrunk by a whole factor, a patch compresses as its part of the frame does. The frame's
        distortion is the mean over the candidates, a random sample of its blocks, so a 1080p frame
        costs about a tenth of degrading it whole.
        """
        height, width = frame.shape[:2]
        positions = self._positions(width, height)
        scored = []
        for x, y in positions:
            patch = frame[y:y + self.patch_px, x:x + self.patch_px]
            decoded, _ = degrade(patch, self.quality)
            restored = upscale_bicubic(decoded, self.patch_px, self.patch_px)
            scored.append((float(((patch.astype(np.float32) - restored.astype(np.float32)) ** 2).mean()), x, y))
        frame_mse = (sum(mse for mse, _, _ in scored) / len(scored) if scored else 0.0) or 1e-6
        informative = sorted(((mse / frame_mse, x, y) for mse, x, y in scored if mse > frame_mse), reverse=True)
        chosen = [ChosenPatch(x, y, frame[y:y + self.patch_px, x:x + self.patch_px].copy(), ratio)
                  for ratio, x, y in informative[:self.per_frame]]
        if chosen or self._next_ts is None:
            self._next_ts = ts + max(len(chosen), 1) / self.patches_per_s
        return PatchChoice(frame_mse, len(positions), len(informative), chosen)

    def _positions(self, width: int, height: int) -> list[tuple[int, int]]:
        cols = (width - self.patch_px) // self.grid + 1
        rows = (height - self.patch_px) // self.grid + 1
        if cols < 1 or rows < 1:
            return []
        cells = rows * cols
        picks = self._rng.choice(cells, size=min(self.candidates, cells), replace=False)
        return [(int(c % cols) * self.grid, int(c // cols) * self.grid) for c in picks]


def encode_patch(patch: ChosenPatch) -> bytes:
    return encode_jpeg(patch.pixels, PATCH_JPEG_QUALITY)
