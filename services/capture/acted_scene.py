"""Acted scenes: one person cut out of a real photo, on the real beach background, acting a script.

The synthetic scene's people only walk. These scripts add what the action classifier must find
(a fall, running, standing about) with the exact time each action starts, for tests and benchmarks
where no real clip of it can be had (no fall clip ships in any package the project can reach).

A script is a list of :class:`Act` (walk, run, stand, fall, lie); the person's feet move along the
ground line, a fall rotates the cut-out about its feet to lying in ``fall_s`` seconds.
Everything is a pure function of (script, t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from services.capture.synthetic_scene import PERSON_HEIGHT_M, load_assets

ActKind = Literal["walk", "run", "stand", "fall", "lie"]
SPEED_M_S: dict[ActKind, float] = {"walk": 1.4, "run": 4.0, "stand": 0.0, "fall": 0.0, "lie": 0.0}


@dataclass(frozen=True)
class Act:
    kind: ActKind
    duration_s: float
    direction: float = 1.0  # +1 rightwards, -1 leftwards (walk, run)


@dataclass(frozen=True)
class ActedPose:
    feet_x: float  # pixels
    angle_deg: float  # 0 upright, 90 lying (rotated about the feet)
    act: ActKind
    bob: float  # upward gait offset in pixels


class ActedScene:
    """One person acting ``script`` in a width x height view; ``person_px`` is their standing height."""

    def __init__(self, script: list[Act], width: int = 1280, height: int = 720, person_px: int = 300,
                 start_x: float = 0.15, sprite: int = 0, fps: float = 15.0) -> None:
        if not script:
            raise ValueError("an acted scene needs at least one act")
        background, sprites = load_assets()
        self.width, self.height, self.person_px, self.fps = width, height, person_px, fps
        self.background = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
        cutout = sprites[sprite % len(sprites)]
        scale = person_px / cutout.shape[0]
        self.sprite = cv2.resize(cutout, (max(1, round(cutout.shape[1] * scale)), person_px), interpolation=cv2.INTER_AREA)
        self.script = script
        self.ground_y = int(height * 0.85)
        self.start_x = start_x * width
        self.starts = list(np.cumsum([0.0, *(act.duration_s for act in script)]))

    @property
    def duration_s(self) -> float:
        return float(self.starts[-1])

    def start_of(self, kind: ActKind) -> float:
        """When the first act of this kind starts (seconds)."""
        return next(float(start) for start, act in zip(self.starts, self.script) if act.kind == kind)

    def pose(self, t: float) -> ActedPose:
        x, angle = self.start_x, 0.0
        pixels_per_m = self.person_px / PERSON_HEIGHT_M
        for start, act in zip(self.starts, self.script):
            elapsed = min(max(t - start, 0.0), act.duration_s)
            x += act.direction * SPEED_M_S[act.kind] * pixels_per_m * elapsed
            if act.kind == "fall":
                progress = elapsed / act.duration_s
                angle = 90.0 * progress * progress  # accelerates like a body tipping over
            elif act.kind == "lie":
                angle = 90.0
            elif t >= start:
                angle = 0.0
            if t < start + act.duration_s:
                moving = act.kind in ("walk", "run")
                step_hz = 1.8 if act.kind == "walk" else 3.0
                bob = 0.012 * self.person_px * abs(math.sin(math.pi * step_hz * t)) if moving else 0.0
                return ActedPose(x, angle, act.kind, bob)
        return ActedPose(x, angle, self.script[-1].kind, 0.0)

    def render(self, t: float) -> np.ndarray:
        frame = self.background.copy()
        pose = self.pose(t)
        sprite_h, sprite_w = self.sprite.shape[:2]
        # Rotate the cut-out about its feet (bottom centre); the canvas holds any angle.
        side = 2 * max(sprite_h, sprite_w) + 2
        pivot = (side / 2, side / 2)
        canvas = np.zeros((side, side, 4), np.uint8)
        top, left = side // 2 - sprite_h, side // 2 - sprite_w // 2
        canvas[top : top + sprite_h, left : left + sprite_w] = self.sprite
        matrix = cv2.getRotationMatrix2D(pivot, -pose.angle_deg, 1.0)
        rotated = cv2.warpAffine(canvas, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        x0 = round(pose.feet_x - side / 2)
        y0 = round(self.ground_y - pose.bob - side / 2)
        self._blend(frame, rotated, x0, y0)
        return frame

    def frames(self) -> list[tuple[float, np.ndarray]]:
        """(time, frame) at the scene's frame rate, from 0 to its end."""
        count = int(self.duration_s * self.fps)
        return [(i / self.fps, self.render(i / self.fps)) for i in range(count)]

    @staticmethod
    def _blend(frame: np.ndarray, bgra: np.ndarray, x0: int, y0: int) -> None:
        fh, fw = frame.shape[:2]
        x1, y1 = max(0, x0), max(0, y0)
        x2, y2 = min(fw, x0 + bgra.shape[1]), min(fh, y0 + bgra.shape[0])
        if x2 <= x1 or y2 <= y1:
            return
        part = bgra[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
        alpha = part[..., 3:4].astype(np.float32) / 255.0
        roi = frame[y1:y2, x1:x2]
        roi[...] = (part[..., :3] * alpha + roi * (1.0 - alpha)).astype(np.uint8)
