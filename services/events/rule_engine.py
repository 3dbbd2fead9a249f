"""Rules evaluated on one camera's tracks, frame by frame: which events open, grow and close.

An event is one episode of one rule on one camera: it opens when the rule's condition first holds
(inside the rule's schedule), gathers every track that makes the condition hold while it is open,
and closes once the condition has been false for ``close_after_s`` (so a track lost for a moment
does not split one visit into two events). Adding a condition kind (such as ``action``) is one
more branch in :meth:`RuleState.matching`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from shared.event_rules import CountCondition, CrossCondition, DwellCondition, RuleConfig
from shared.zones import CameraScene, Point, point_in_polygon, segments_cross, side_of_line


@dataclass(frozen=True)
class TrackedObject:
    """One track's position on one frame (pixel box, normalised foot point)."""

    track_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]
    foot: Point


@dataclass
class OpenEvent:
    id: str
    rule: RuleConfig
    camera_id: str
    place: str  # zone or line name
    start_ts: float
    opened_ts: float
    last_true_ts: float
    track_ids: set[int] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    best: TrackedObject | None = None
    best_ts: float = 0.0
    best_area: float = 0.0


@dataclass(frozen=True)
class Transition:
    """What changed at one frame: ``opened``, ``grew`` (new tracks or a better view) or ``closed``."""

    kind: str
    event: OpenEvent
    ts: float
    new_tracks: tuple[int, ...] = ()


@dataclass
class TrackInZone:
    frames_inside: int = 0
    entered_ts: float | None = None  # when it started counting as inside
    last_foot: Point | None = None


class RuleState:
    """One rule on one camera: per-track membership and the open event, if any."""

    def __init__(self, rule: RuleConfig, scene: CameraScene, zone_info: ZoneInfo, close_after_s: float) -> None:
        self.rule = rule
        self.camera_id = scene.camera_id
        self.place = rule.line if rule.condition.kind == "cross" else rule.zone
        self.polygon = scene.zones.get(rule.zone) if rule.zone else None
        self.line = scene.lines.get(rule.line) if rule.line else None
        self.zone_info = zone_info
        self.close_after_s = close_after_s
        self.tracks: dict[int, TrackInZone] = {}
        self.open: OpenEvent | None = None

    def step(self, ts: float, objects: list[TrackedObject]) -> list[Transition]:
        objects = [o for o in objects if o.label in self.rule.labels]
        matching = self.matching(ts, objects)
        transitions: list[Transition] = []
        if self.open is None:
            if matching and self.rule.active_at(ts, self.zone_info):
                start = min((self.tracks[o.track_id].entered_ts or ts for o in matching), default=ts)
                if not isinstance(self.rule.condition, DwellCondition):
                    start = ts
                self.open = OpenEvent(uuid.uuid4().hex[:16], self.rule, self.camera_id, self.place or "", start, ts, ts)
                self._absorb(self.open, matching, ts)
                transitions.append(Transition("opened", self.open, ts, tuple(sorted(self.open.track_ids))))
            return transitions
        if matching:
            self.open.last_true_ts = ts
            new = self._absorb(self.open, matching, ts)
            if new is not None:
                transitions.append(Transition("grew", self.open, ts, new))
        elif ts - self.open.last_true_ts >= self.close_after_s:
            transitions.append(Transition("closed", self.open, ts))
            self.open = None
        return transitions

    def matching(self, ts: float, objects: list[TrackedObject]) -> list[TrackedObject]:
        condition = self.rule.condition
        if isinstance(condition, CrossCondition):
            return self._crossing(objects, condition)
        inside = self._update_membership(ts, objects)
        if isinstance(condition, DwellCondition):
            return [o for o in inside if ts - (self.tracks[o.track_id].entered_ts or ts) >= condition.seconds]
        if isinstance(condition, CountCondition):
            return inside if len(inside) > condition.more_than else []
        return inside  # enter

    def _update_membership(self, ts: float, objects: list[TrackedObject]) -> list[TrackedObject]:
        seen = {o.track_id for o in objects}
        for gone in [t for t in self.tracks if t not in seen]:
            del self.tracks[gone]
        inside = []
        for obj in objects:
            state = self.tracks.setdefault(obj.track_id, TrackInZone())
            if self.polygon is not None and point_in_polygon(obj.foot[0], obj.foot[1], self.polygon):
                state.frames_inside += 1
                if state.frames_inside >= self.rule.inertia:
                    if state.entered_ts is None:
                        state.entered_ts = ts
                    inside.append(obj)
            else:
                state.frames_inside, state.entered_ts = 0, None
        return inside

    def _crossing(self, objects: list[TrackedObject], condition: CrossCondition) -> list[TrackedObject]:
        crossed = []
        seen = {o.track_id for o in objects}
        for gone in [t for t in self.tracks if t not in seen]:
            del self.tracks[gone]
        for obj in objects:
            state = self.tracks.setdefault(obj.track_id, TrackInZone())
            before, state.last_foot = state.last_foot, obj.foot
            if before is None or self.line is None or not segments_cross(before, obj.foot, self.line):
                continue
            to_right = side_of_line(*obj.foot, self.line) > 0
            if condition.direction == "any" or (condition.direction == "left_to_right") == to_right:
                crossed.append(obj)
        return crossed

    @staticmethod
    def _absorb(event: OpenEvent, matching: list[TrackedObject], ts: float) -> tuple[int, ...] | None:
        """Add the matching tracks to the event; the new track ids, or () for a better view, or None."""
        new = tuple(sorted({o.track_id for o in matching} - event.track_ids))
        event.track_ids.update(o.track_id for o in matching)
        event.labels.update(o.label for o in matching)
        better = False
        for obj in matching:
            area = (obj.box[2] - obj.box[0]) * (obj.box[3] - obj.box[1]) * obj.score
            if area > event.best_area:
                event.best, event.best_ts, event.best_area, better = obj, ts, area, True
        return new if new or better else None

    def flush(self, ts: float) -> list[Transition]:
        """Close the open event (the service stops)."""
        if self.open is None:
            return []
        event, self.open = self.open, None
        return [Transition("closed", event, ts)]


class CameraRules:
    """Every rule that watches one camera."""

    def __init__(self, scene: CameraScene, rules: list[RuleConfig], zone_info: ZoneInfo, close_after_s: float) -> None:
        self.scene = scene
        self.states = [RuleState(rule, scene, zone_info, close_after_s) for rule in rules if self.watches(rule, scene)]

    @staticmethod
    def watches(rule: RuleConfig, scene: CameraScene) -> bool:
        if rule.cameras and scene.camera_id not in rule.cameras:
            return False
        return (rule.zone in scene.zones) if rule.condition.kind != "cross" else (rule.line in scene.lines)

    def step(self, ts: float, objects: list[TrackedObject]) -> list[Transition]:
        return [t for state in self.states for t in state.step(ts, objects)]

    def flush(self, ts: float) -> list[Transition]:
        return [t for state in self.states for t in state.flush(ts)]
