"""What a tracked person does, from their keypoints and box, one observation at a time.

The MoViNet idea on poses: a causal classifier that never looks at a clip, only at the newest
observation and a small state carried from the previous ones (when the person was last upright,
since when they lie, a smoothed speed, where they have been standing and since when, since when
their hands are up). Each update costs a few arithmetic operations, whatever the time span an
action needs (a loitering person is judged over minutes without storing minutes of poses).

Transparent rules, no learnt weights (no labelled action data can be had offline); every
threshold is a field of :class:`ActionThresholds` (HYBRIDCAM_EDGE_ACTION_* settings on the edge),
and docs/actions.md says how each was calibrated.

Positions and speeds are measured in the person's own standing height (the box height while
upright, smoothed), so the rules do not depend on the camera's distance or resolution.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shared.schemas import ActionName

Posture = Literal["upright", "between", "lying"]
Box = tuple[float, float, float, float]

NOSE, L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST, L_HIP, R_HIP = 0, 5, 6, 9, 10, 11, 12


class ActionThresholds(BaseModel):
    """Every threshold of the rules; the defaults and how they were found are in docs/actions.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keypoint_min_score: float = Field(0.3, ge=0.0, le=1.0, description="keypoints scored lower are not used")
    upright_angle_deg: float = Field(35.0, ge=0.0, le=90.0, description="torso within this angle of vertical: upright")
    lying_angle_deg: float = Field(60.0, ge=0.0, le=90.0, description="torso at least this far from vertical: lying")
    upright_aspect: float = Field(1.6, gt=0.0, description="without torso keypoints: box height/width at least this: upright")
    lying_aspect: float = Field(1.2, gt=0.0, description="without torso keypoints: box width/height at least this: lying")
    fall_max_transition_s: float = Field(1.0, gt=0.0, description="a fall goes from upright to lying within this time")
    fall_min_drop: float = Field(0.2, ge=0.0, description="and the box centre has dropped at least this many standing heights when it is confirmed")
    fall_still_s: float = Field(1.0, ge=0.0, description="then the person stays lying (and slow) this long before fall fires")
    still_speed: float = Field(0.5, gt=0.0, description="standing heights per second below which a person is still")
    fall_hold_s: float = Field(10.0, ge=0.0, description="fall stays reported this long after it fired, unless the person gets up")
    lying_s: float = Field(3.0, ge=0.0, description="lying this long: lying")
    speed_tau_s: float = Field(0.5, gt=0.0, description="time constant of the speed's smoothing")
    running_speed: float = Field(1.6, gt=0.0, description="standing heights per second from which a person runs")
    running_min_s: float = Field(0.8, ge=0.0, description="that fast this long: running")
    loiter_radius: float = Field(1.0, gt=0.0, description="staying within this many standing heights of one spot...")
    loiter_s: float = Field(20.0, gt=0.0, description="...this long: loitering")
    hands_margin: float = Field(0.1, ge=0.0, description="wrists above the shoulders by this share of the torso length")
    hands_min_s: float = Field(0.5, ge=0.0, description="both hands up this long: hands_raised")
    handover_s: float = Field(1.0, ge=0.0, description="a new track starting this soon after another ended nearby...")
    handover_distance: float = Field(1.0, ge=0.0, description="...within this many standing heights carries on its state")
    forget_s: float = Field(5.0, gt=0.0, description="a track not observed this long is forgotten")


@dataclass
class TrackActionState:
    """What one track carries from one observation to the next."""

    last_ts: float
    height: float  # standing height in pixels, smoothed
    centre: tuple[float, float]
    speed: float = 0.0  # standing heights per second, smoothed
    posture: Posture = "upright"
    last_upright_ts: float = -math.inf
    upright_centre_y: float = 0.0  # box centre y when last upright (pixels)
    lying_since: float | None = None
    fall_candidate: bool = False
    fall_fired_ts: float | None = None
    fast_since: float | None = None
    anchor: tuple[float, float] = (0.0, 0.0)
    anchor_since: float = 0.0
    hands_since: float | None = None
    active: frozenset[ActionName] = frozenset()
    started: dict[ActionName, float] = field(default_factory=dict)  # action -> observation time it started


@dataclass(frozen=True)
class ActionUpdate:
    active: frozenset[ActionName]
    started: frozenset[ActionName]  # newly active with this observation


def torso_angle_deg(keypoints: np.ndarray | None, min_score: float) -> float | None:
    """Angle of the hips-to-shoulders line from vertical (0 upright, 90 horizontal); None without those keypoints."""
    if keypoints is None or (keypoints[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 2] < min_score).any():
        return None
    shoulders = keypoints[[L_SHOULDER, R_SHOULDER], :2].mean(axis=0)
    hips = keypoints[[L_HIP, R_HIP], :2].mean(axis=0)
    dx, dy = shoulders - hips
    if dx == 0 and dy == 0:
        return None
    return min(90.0, math.degrees(math.atan2(abs(float(dx)), -float(dy))))  # shoulders below the hips count as lying


def posture_of(box: Box, keypoints: np.ndarray | None, limits: ActionThresholds,
               frame_size: tuple[int, int] | None = None) -> Posture:
    angle = torso_angle_deg(keypoints, limits.keypoint_min_score)
    if angle is not None:
        return "upright" if angle <= limits.upright_angle_deg else "lying" if angle >= limits.lying_angle_deg else "between"
    if frame_size is not None and cut_by_frame_edge(box, frame_size):
        return "between"  # a person half out of the picture has a box of any shape: it says nothing
    width, height = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    if height / width >= limits.upright_aspect:
        return "upright"
    return "lying" if width / height >= limits.lying_aspect else "between"


def cut_by_frame_edge(box: Box, frame_size: tuple[int, int], margin_px: float = 2.0) -> bool:
    width, height = frame_size
    return box[0] <= margin_px or box[1] <= margin_px or box[2] >= width - margin_px or box[3] >= height - margin_px


def hands_up(keypoints: np.ndarray | None, limits: ActionThresholds) -> bool:
    if keypoints is None:
        return False
    needed = [L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST, L_HIP, R_HIP]
    if (keypoints[needed, 2] < limits.keypoint_min_score).any():
        return False
    shoulder_y = float(keypoints[[L_SHOULDER, R_SHOULDER], 1].min())
    torso = abs(float(keypoints[[L_HIP, R_HIP], 1].mean()) - float(keypoints[[L_SHOULDER, R_SHOULDER], 1].mean()))
    return bool((keypoints[[L_WRIST, R_WRIST], 1] < shoulder_y - limits.hands_margin * torso).all())


class ActionClassifier:
    """The per-track streaming classifier: ``update`` takes one observation of one track."""

    def __init__(self, limits: ActionThresholds | None = None) -> None:
        self.limits = limits or ActionThresholds()
        self.tracks: dict[tuple[str, int], TrackActionState] = {}

    def update(self, key: tuple[str, int], ts: float, box: Box, keypoints: np.ndarray | None,
               frame_size: tuple[int, int] | None = None, present: Collection[tuple[str, int]] = ()) -> ActionUpdate:
        """One observation (capture time, box in pixels, keypoints [17, 3] or None, frame width and height) of track
        ``key``; ``present``: the tracks in the same frame (still alive, so their state is never handed over)."""
        state = self.tracks.get(key)
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        if state is None and (state := self._handover(key, ts, centre, present)) is not None:
            self.tracks[key] = state
        if state is None:
            posture = posture_of(box, keypoints, self.limits, frame_size)
            state = self.tracks[key] = TrackActionState(  # someone first seen lying has not fallen in view
                last_ts=ts, height=max(box[3] - box[1], 1.0), centre=centre, anchor=centre, anchor_since=ts,
                last_upright_ts=ts if posture == "upright" else -math.inf, upright_centre_y=centre[1], posture=posture)
            return ActionUpdate(frozenset(), frozenset())
        if ts <= state.last_ts:
            return ActionUpdate(state.active, frozenset())  # late or repeated observation: the state only moves forward
        active = self._step(state, ts, box, centre, posture_of(box, keypoints, self.limits, frame_size), keypoints)
        started = frozenset(active - state.active)
        for name in started:
            state.started[name] = ts
        state.active = active
        return ActionUpdate(active, started)

    def _handover(self, key: tuple[str, int], ts: float, centre: tuple[float, float],
                  present: Collection[tuple[str, int]]) -> TrackActionState | None:
        """A new track where another of the same camera just ended: the same person (a fall changes the box so
        much that the tracker may start a new track), so the new track carries on from the old one's state."""
        limits = self.limits
        candidates = [(math.dist(centre, state.centre) / state.height, other) for other, state in self.tracks.items()
                      if other[0] == key[0] and other != key and other not in present and 0 < ts - state.last_ts <= limits.handover_s]
        near = [(distance, other) for distance, other in candidates if distance <= limits.handover_distance]
        if not near:
            return None
        return self.tracks.pop(min(near)[1])

    def actions(self, key: tuple[str, int]) -> frozenset[ActionName]:
        state = self.tracks.get(key)
        return state.active if state else frozenset()

    def forget_older_than(self, now: float, keep: Iterable[tuple[str, int]] = ()) -> None:
        """Drop tracks not observed within forget_s of ``now`` (bounded state)."""
        kept = set(keep)
        self.tracks = {key: state for key, state in self.tracks.items()
                       if key in kept or now - state.last_ts <= self.limits.forget_s}

    def _step(self, state: TrackActionState, ts: float, box: Box, centre: tuple[float, float], posture: Posture,
              keypoints: np.ndarray | None) -> frozenset[ActionName]:
        limits = self.limits
        dt = ts - state.last_ts
        if posture == "upright":  # the standing height only learns from upright views
            state.height += (1.0 - math.exp(-dt / 2.0)) * (max(box[3] - box[1], 1.0) - state.height)
        moved = math.dist(centre, state.centre) / state.height
        alpha = 1.0 - math.exp(-dt / limits.speed_tau_s)
        state.speed += alpha * (moved / dt - state.speed)
        state.last_ts, state.centre, state.posture = ts, centre, posture
        active: set[ActionName] = set()
        self._lying_and_fall(state, ts, centre, posture, active)
        if state.speed >= limits.running_speed and posture != "lying":
            state.fast_since = ts if state.fast_since is None else state.fast_since
            if ts - state.fast_since >= limits.running_min_s:
                active.add("running")
        else:
            state.fast_since = None
        if math.dist(centre, state.anchor) > limits.loiter_radius * state.height:
            state.anchor, state.anchor_since = centre, ts
        elif ts - state.anchor_since >= limits.loiter_s and "fall" not in active and "lying" not in active:
            active.add("loitering")
        if posture == "upright" and hands_up(keypoints, limits):
            state.hands_since = ts if state.hands_since is None else state.hands_since
            if ts - state.hands_since >= limits.hands_min_s:
                active.add("hands_raised")
        else:
            state.hands_since = None
        return frozenset(active)

    def _lying_and_fall(self, state: TrackActionState, ts: float, centre: tuple[float, float], posture: Posture,
                        active: set[ActionName]) -> None:
        limits = self.limits
        if posture == "upright":
            state.last_upright_ts, state.upright_centre_y = ts, centre[1]
            state.lying_since, state.fall_candidate, state.fall_fired_ts = None, False, None
            return
        if posture != "lying" and state.lying_since is None:
            return
        if state.lying_since is None:
            state.lying_since = ts
            state.fall_candidate = ts - state.last_upright_ts <= limits.fall_max_transition_s
        lying_for = ts - state.lying_since
        if lying_for >= limits.lying_s:
            active.add("lying")
        dropped = (centre[1] - state.upright_centre_y) / state.height >= limits.fall_min_drop
        if (state.fall_candidate and state.fall_fired_ts is None and lying_for >= limits.fall_still_s
                and state.speed <= limits.still_speed and dropped):
            state.fall_fired_ts = ts
        if state.fall_fired_ts is not None and ts - state.fall_fired_ts <= limits.fall_hold_s:
            active.add("fall")

