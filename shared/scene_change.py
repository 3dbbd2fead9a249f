"""Cheap scene-change features of a frame against a reference frame, on a downscaled grey image.

Used by the sampler (send a master frame to the cloud when the scene changed since the last
frame *sent*) and by edge inference (skip detector runs on a still camera). The features follow
Reducto (SIGCOMM 2020): pixel, area and edge differences, each a fraction of the frame, so one
set of thresholds fits every resolution.

One :class:`SceneChangeDetector` per camera holds the downscaled reference and reusable
buffers, so a call allocates nothing per frame beyond the small result object::

    detector = SceneChangeDetector(SceneChangeSettings())
    features = detector.features(frame)           # against the reference
    if detector.settings.changed(features):
        send(frame)
        detector.set_reference()                  # the frame just measured becomes the reference

Frames are BGR (H x W x 3) or grey (H x W) uint8 arrays of any size; a camera's frames keep
one size (a new size starts over without a reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class SceneChangeSettings:
    """How frames are compared, and when a comparison counts as a change (any threshold met)."""

    width: int = 160
    """width of the downscaled grey image the features are computed on (height keeps the aspect)"""
    blur: int = 3
    """odd box-blur size on the small image, so sensor noise and JPEG blocks do not count (1 = none)"""
    pixel_delta: int = 18
    """grey-level difference (0-255) from which a pixel counts as changed"""
    edge_low: int = 60
    edge_high: int = 150
    """Canny hysteresis thresholds for the edge map"""
    changed_fraction: float = 0.02
    """change when at least this share of the pixels changed"""
    largest_area: float = 0.004
    """change when one connected changed region covers at least this share of the frame"""
    edge_difference: float = 0.02
    """change when edge pixels that appeared or vanished make up at least this share of the frame"""

    def __post_init__(self) -> None:
        if self.width < 16:
            raise ValueError("width must be at least 16 pixels")
        if self.blur < 1 or self.blur % 2 == 0:
            raise ValueError("blur must be an odd number of pixels (1 = no blur)")
        if not 0 < self.pixel_delta < 256:
            raise ValueError("pixel_delta must be between 1 and 255")
        for name in ("changed_fraction", "largest_area", "edge_difference"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction in (0, 1]")

    def changed(self, features: ChangeFeatures) -> bool:
        return (features.changed_fraction >= self.changed_fraction
                or features.largest_area >= self.largest_area
                or features.edge_difference >= self.edge_difference)

    def strength(self, features: ChangeFeatures) -> float:
        """How far past its threshold the strongest feature is (1.0 = exactly at a threshold)."""
        return max(features.changed_fraction / self.changed_fraction,
                   features.largest_area / self.largest_area,
                   features.edge_difference / self.edge_difference)


@dataclass(frozen=True, slots=True)
class ChangeFeatures:
    """Change of one frame against the reference, each a fraction of the frame (0..1)."""

    changed_fraction: float
    """share of pixels whose grey level moved by at least pixel_delta"""
    largest_area: float
    """the largest 8-connected region of changed pixels"""
    edge_difference: float
    """pixels that are an edge in one frame and not in the other"""

    @classmethod
    def everything(cls) -> ChangeFeatures:
        """What a frame without a reference to compare with counts as: all changed."""
        return cls(1.0, 1.0, 1.0)

    def as_dict(self) -> dict[str, float]:
        return {"changed_fraction": self.changed_fraction, "largest_area": self.largest_area,
                "edge_difference": self.edge_difference}


@dataclass(frozen=True, slots=True)
class KeptFrame:
    """A small copy of a measured frame (downscaled grey and edges) to make the reference later."""

    source_shape: tuple[int, ...]
    grey: np.ndarray
    edges: np.ndarray


class SceneChangeDetector:
    """One camera's reference frame and the buffers its comparisons reuse."""

    def __init__(self, settings: SceneChangeSettings | None = None,
                 ignore: Sequence[Sequence[tuple[float, float]]] = ()) -> None:
        """``ignore``: normalised polygons (the camera's masks: a clock, a tree) whose pixels never count as change."""
        self.settings = settings or SceneChangeSettings()
        self.ignore = tuple(tuple(polygon) for polygon in ignore)
        self._keep: np.ndarray | None = None
        self._source_shape: tuple[int, ...] | None = None
        self._size: tuple[int, int] = (0, 0)
        self._has_reference = False
        self._has_current = False
        self._has_anchor = False

    @property
    def has_reference(self) -> bool:
        return self._has_reference

    def features(self, frame: np.ndarray) -> ChangeFeatures:
        """Change of `frame` against the reference (everything changed when there is none yet)."""
        self._load(frame)
        if not self._has_reference:
            return ChangeFeatures.everything()
        cv2.absdiff(self._grey, self._reference_grey, dst=self._diff)
        cv2.threshold(self._diff, self.settings.pixel_delta - 1, 255, cv2.THRESH_BINARY, dst=self._mask)
        changed = cv2.countNonZero(self._mask)
        cv2.bitwise_xor(self._edges, self._reference_edges, dst=self._edge_xor)
        edge_changes = cv2.countNonZero(self._edge_xor)
        return ChangeFeatures(changed / self._pixels, self._largest_region(changed) / self._pixels,
                              edge_changes / self._pixels)

    def set_reference(self, frame: np.ndarray | KeptFrame | None = None) -> None:
        """Make `frame` the reference; without an argument, the frame last given to features().

        A KeptFrame (from keep()) of another frame size is ignored: the camera changed size.
        """
        if isinstance(frame, KeptFrame):
            if frame.source_shape != self._source_shape:
                return
            np.copyto(self._reference_grey, frame.grey)
            np.copyto(self._reference_edges, frame.edges)
            self._has_reference = True
            return
        if frame is not None:
            self._load(frame)
        elif not self._has_current:
            raise ValueError("no frame measured yet: pass the reference frame")
        np.copyto(self._reference_grey, self._grey)
        np.copyto(self._reference_edges, self._edges)
        self._has_reference = True

    def keep(self) -> KeptFrame:
        """A copy of the frame last given to features(), for a set_reference() decided later."""
        if not self._has_current or self._source_shape is None:
            raise ValueError("no frame measured yet")
        return KeptFrame(self._source_shape, self._grey.copy(), self._edges.copy())

    def clear_reference(self) -> None:
        self._has_reference = False

    def moved(self, share: float) -> bool:
        """Whether the frame last given to features() differs in at least `share` of its pixels from
        the frame where the scene last moved (the anchor), which it then becomes. Slow motion adds up
        against the anchor, so a scene is 'still' only while nothing moves, whatever the reference."""
        if self._has_anchor:
            cv2.absdiff(self._grey, self._anchor_grey, dst=self._diff)
            cv2.threshold(self._diff, self.settings.pixel_delta - 1, 255, cv2.THRESH_BINARY, dst=self._mask)
            if cv2.countNonZero(self._mask) < share * self._pixels:
                return False
        np.copyto(self._anchor_grey, self._grey)
        self._has_anchor = True
        return True

    # -- internals ---------------------------------------------------------------------------
    def _load(self, frame: np.ndarray) -> None:
        """Downscale `frame` to grey into the current-frame buffers, with its edge map."""
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
            raise ValueError(f"expected a BGR or grey uint8 frame, got shape {frame.shape} {frame.dtype}")
        if frame.shape != self._source_shape:
            self._allocate(frame.shape)
        # Point-sample to twice the target size, then average 2x2: a full-frame area filter
        # reads every pixel (about 3 ms at 1080p), this reads one in 36 and still smooths.
        colour = frame.ndim == 3
        source = frame
        if self._sampled is not None:
            source = cv2.resize(frame, self._sampled_size, dst=self._sampled, interpolation=cv2.INTER_NEAREST)
        if colour:
            cv2.resize(source, self._size, dst=self._small_colour, interpolation=cv2.INTER_AREA)
            cv2.cvtColor(self._small_colour, cv2.COLOR_BGR2GRAY, dst=self._small_grey)
        else:
            cv2.resize(source, self._size, dst=self._small_grey, interpolation=cv2.INTER_AREA)
        blur = self.settings.blur
        if blur > 1:
            cv2.blur(self._small_grey, (blur, blur), dst=self._grey)
        else:
            np.copyto(self._grey, self._small_grey)
        if self._keep is not None:  # masked pixels are black in every frame, so they never differ
            cv2.bitwise_and(self._grey, self._keep, dst=self._grey)
        cv2.Canny(self._grey, self.settings.edge_low, self.settings.edge_high, edges=self._edges)
        self._has_current = True

    def _allocate(self, shape: tuple[int, ...]) -> None:
        height, width = shape[:2]
        small_w = min(self.settings.width, width)
        small_h = max(1, round(height * small_w / width))
        self._size = (small_w, small_h)
        self._pixels = float(small_w * small_h)
        small = (small_h, small_w)
        self._sampled_size = (small_w * 2, small_h * 2)
        self._sampled: np.ndarray | None = None
        if width > small_w * 4:
            self._sampled = np.empty((small_h * 2, small_w * 2, *shape[2:]), np.uint8)
        self._small_colour = np.empty((*small, 3), np.uint8)
        self._small_grey, self._grey, self._reference_grey = (np.empty(small, np.uint8) for _ in range(3))
        self._anchor_grey = np.empty(small, np.uint8)
        self._has_anchor = False
        self._diff, self._mask = np.empty(small, np.uint8), np.empty(small, np.uint8)
        self._edges, self._reference_edges, self._edge_xor = (np.empty(small, np.uint8) for _ in range(3))
        self._labels = np.empty(small, np.int32)
        self._keep = None
        if self.ignore:
            self._keep = np.full(small, 255, np.uint8)
            for polygon in self.ignore:
                points = np.array([[x * small_w, y * small_h] for x, y in polygon], np.int32)
                cv2.fillPoly(self._keep, [points], 0)
        self._source_shape = shape
        self._has_reference = False
        self._has_current = False

    def _largest_region(self, changed: int) -> int:
        if changed == 0:
            return 0
        count, _, stats, _ = cv2.connectedComponentsWithStats(self._mask, labels=self._labels, connectivity=8)
        return int(stats[1:count, cv2.CC_STAT_AREA].max()) if count > 1 else 0
