"""The virtual camera: a 16:9 crop of a wide master that frames the action like an operator.

The crop's centre and width move like a real head and zoom: nothing moves while the target
stays inside a dead zone around the current framing; a move accelerates and brakes at no
more than ``max_accel`` and never exceeds ``max_speed`` (both in master widths per second),
so the picture pans rather than jumps. The crop is never narrower than the program width
divided by ``max_upscale`` source pixels (a 4K master gives a lossless 1080p crop at 1.0).
State is in master pixels; ``rect`` gives the normalised crop for the renderer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.tracker import Box

FOLLOW_GAIN = 1.5  # per second: the pan eases into the target instead of braking at full deceleration


@dataclass(frozen=True)
class PanZoomLimits:
    max_speed: float = 0.25  # master widths per second (pan and zoom)
    max_accel: float = 0.5  # master widths per second squared
    dead_zone: float = 0.12  # share of the crop size the target may drift before the camera moves
    settle: float = 0.02  # a move ends once the framing is this close (share of the crop size)
    margin: float = 0.3  # room around the action region, as a share of its size
    headroom: float = 0.08  # extra room above the subjects, as a share of the crop height
    max_upscale: float = 2.0  # never show a source pixel larger than this on the program
    aspect: float = 16 / 9


DEFAULT_LIMITS = PanZoomLimits()


class _Axis:
    """One axis (x, y or width) moved with bounded velocity and acceleration, with a dead zone."""

    def __init__(self, position: float) -> None:
        self.position = position
        self.velocity = 0.0
        self.moving = False

    def step(self, target: float, dt: float, dead_zone: float, settle: float, max_speed: float, max_accel: float) -> None:
        error = target - self.position
        if not self.moving and abs(error) > dead_zone:
            self.moving = True
        if self.moving and abs(error) <= settle and abs(self.velocity) <= max_accel * dt:
            self.moving = False
        wanted = 0.0
        if self.moving:
            braking = math.sqrt(2.0 * max_accel * max(0.0, abs(error) - settle / 2))  # stop on target, not past it
            wanted = math.copysign(min(max_speed, braking, FOLLOW_GAIN * abs(error)), error)
        change = max(-max_accel * dt, min(max_accel * dt, wanted - self.velocity))
        self.velocity += change
        self.position += self.velocity * dt


class PanZoomCamera:
    def __init__(self, master_w: int, master_h: int, program_w: int, limits: PanZoomLimits) -> None:
        self.master_w, self.master_h = master_w, master_h
        self.limits = limits
        self.full_w = min(float(master_w), master_h * limits.aspect)  # widest 16:9 crop, px
        self.min_w = min(self.full_w, program_w / limits.max_upscale)
        self._x: _Axis | None = None
        self._y: _Axis | None = None
        self._w: _Axis | None = None

    @property
    def can_zoom(self) -> bool:
        """Whether a crop can be noticeably tighter than the whole frame."""
        return self.min_w <= 0.8 * self.full_w

    def target(self, region: Box) -> tuple[float, float, float]:
        """Centre x, centre y and width (px) of the crop that frames a normalised region."""
        lim = self.limits
        rx0, ry0, rx1, ry1 = region[0] * self.master_w, region[1] * self.master_h, region[2] * self.master_w, region[3] * self.master_h
        need_w = (rx1 - rx0) * (1 + 2 * lim.margin)
        need_h = (ry1 - ry0) * (1 + 2 * lim.margin) / (1 - lim.headroom)
        width = min(self.full_w, max(self.min_w, need_w, need_h * lim.aspect))
        height = width / lim.aspect
        cx = (rx0 + rx1) / 2
        cy = (ry0 + ry1) / 2 - lim.headroom * height / 2
        return self._clamped(cx, cy, width)

    def _clamped(self, cx: float, cy: float, width: float) -> tuple[float, float, float]:
        height = width / self.limits.aspect
        cx = min(max(cx, width / 2), self.master_w - width / 2)
        cy = min(max(cy, height / 2), self.master_h - height / 2)
        return cx, cy, width

    def snap(self, target: tuple[float, float, float]) -> None:
        """Jump to a framing (only when the crop is not on air: cutting to it is a cut)."""
        self._x, self._y, self._w = _Axis(target[0]), _Axis(target[1]), _Axis(target[2])

    def step(self, target: tuple[float, float, float], dt: float) -> None:
        """Move toward a framing for ``dt`` seconds within the speed and acceleration limits."""
        if self._x is None or self._y is None or self._w is None:
            self.snap(target)
            return
        if dt <= 0:
            return
        lim = self.limits
        width = self._w.position
        speed, accel = lim.max_speed * self.master_w, lim.max_accel * self.master_w
        self._w.step(target[2], dt, lim.dead_zone * width, lim.settle * width, speed, accel)
        # the centre aims at where the target will be valid for the (possibly wider) crop as it is now
        cx, cy, _ = self._clamped(target[0], target[1], max(self._w.position, target[2]))
        self._x.step(cx, dt, lim.dead_zone * width, lim.settle * width, speed, accel)
        self._y.step(cy, dt, lim.dead_zone * width / lim.aspect, lim.settle * width / lim.aspect, speed, accel)

    @property
    def centre_px(self) -> tuple[float, float]:
        assert self._x is not None and self._y is not None
        return self._x.position, self._y.position

    def rect(self) -> Box:
        """The crop as a normalised box of the master (kept inside the frame)."""
        if self._x is None or self._y is None or self._w is None:
            return (0.0, 0.0, self.full_w / self.master_w, self.full_w / self.limits.aspect / self.master_h)
        width = min(self.full_w, max(self.min_w * 0.999, self._w.position))
        cx, cy, width = self._clamped(self._x.position, self._y.position, width)
        height = width / self.limits.aspect
        return ((cx - width / 2) / self.master_w, (cy - height / 2) / self.master_h,
                (cx + width / 2) / self.master_w, (cy + height / 2) / self.master_h)
