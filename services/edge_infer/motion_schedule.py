"""Motion-aware split of the detector's budget between cameras.

Each round, every camera's newest frame is measured with the shared scene-change features
(shared/scene_change.py) against the camera's previous frame. A camera is *active* while it moves
(and for `hold_s` after) or while it has tracked objects; otherwise it is *static*.
- static cameras are analysed at the floor rate (`floor_fps`), whatever else happens;
- active cameras share the rest: each round analyses at most `per_round` frames (the detector
  requests in flight), due static cameras first, then active cameras least recently analysed
  first (round-robin among equals);
- every other newest frame is deferred: the caller acknowledges it as skipped (counted) and
  carries the tracker's boxes onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from shared.scene_change import SceneChangeDetector, SceneChangeSettings

Item = TypeVar("Item")


@dataclass
class CameraMotion:
    change: SceneChangeDetector
    last_analysed: float = -math.inf
    floor_due: float = -math.inf  # when the floor rate wants the next analysis
    last_turn: int = -1  # order of the last analysis among all cameras: round-robin without ties
    moving_until: float = -math.inf
    has_tracks: bool = False
    motion_strength: float = 0.0

    def active(self, now: float) -> bool:
        return self.has_tracks or now < self.moving_until


@dataclass(frozen=True)
class Candidate(Generic[Item]):
    camera_id: str
    item: Item


@dataclass
class Plan(Generic[Item]):
    analyse: list[Item] = field(default_factory=list)
    defer: list[Item] = field(default_factory=list)


class MotionScheduler:
    def __init__(
        self,
        per_round: int,
        floor_fps: float = 1.0,
        hold_s: float = 1.0,
        change_settings: SceneChangeSettings | None = None,
        masks: dict[str, tuple] | None = None,
    ) -> None:
        """``masks``: per camera, the normalised polygons its motion ignores (the site file's masks)."""
        if per_round < 1 or floor_fps <= 0 or hold_s < 0:
            raise ValueError("per_round must be at least 1, floor_fps above 0 and hold_s not negative.")
        self.per_round = per_round
        self.floor_interval_s = 1.0 / floor_fps
        self.hold_s = hold_s
        # Motion from one frame to the next (not against a frame sent long ago): a little more sensitive
        # to small regions than the sampler's defaults, so one person entering the frame counts.
        self.change_settings = change_settings or SceneChangeSettings(largest_area=0.002)
        self.cameras: dict[str, CameraMotion] = {}
        self.masks = masks or {}
        self._turns = 0

    def camera(self, camera_id: str) -> CameraMotion:
        state = self.cameras.get(camera_id)
        if state is None:
            state = self.cameras[camera_id] = CameraMotion(SceneChangeDetector(self.change_settings,
                                                                                self.masks.get(camera_id, ())))
        return state

    def observe(self, camera_id: str, pixels: np.ndarray, now: float) -> bool:
        """Measure motion on the camera's newest frame (against its previous one); True if it moves."""
        state = self.camera(camera_id)
        features = state.change.features(pixels)
        had_reference = state.change.has_reference
        state.change.set_reference()
        moving = had_reference and self.change_settings.changed(features)
        state.motion_strength = self.change_settings.strength(features) if had_reference else 0.0
        if moving:
            state.moving_until = now + self.hold_s
        return moving

    def set_tracks(self, camera_id: str, has_tracks: bool) -> None:
        self.camera(camera_id).has_tracks = has_tracks

    def plan(self, candidates: Sequence[Candidate[Item]], now: float) -> Plan[Item]:
        """Which candidates to analyse this round; marks those chosen as analysed at `now`."""
        due_static: list[Candidate[Item]] = []
        active: list[Candidate[Item]] = []
        plan: Plan[Item] = Plan()
        for candidate in candidates:
            state = self.camera(candidate.camera_id)
            if state.active(now):
                active.append(candidate)
            elif now >= state.floor_due:
                due_static.append(candidate)
            else:
                plan.defer.append(candidate.item)
        by_wait = sorted(due_static, key=self._last_turn) + sorted(active, key=self._last_turn)
        for index, candidate in enumerate(by_wait):
            if index < self.per_round:
                state = self.cameras[candidate.camera_id]
                state.last_analysed, state.last_turn = now, self._turns
                # Keep the floor's average rate when rounds are late, without bunching analyses up.
                state.floor_due = (now + self.floor_interval_s if math.isinf(state.floor_due) else
                                   max(state.floor_due + self.floor_interval_s, now + self.floor_interval_s / 2))
                self._turns += 1
                plan.analyse.append(candidate.item)
            else:
                plan.defer.append(candidate.item)
        return plan

    def _last_turn(self, candidate: Candidate[Item]) -> int:
        return self.cameras[candidate.camera_id].last_turn
