"""The action director: shot grammar over interest-scored candidate shots.

Candidate shots are each master's full frame (the wide shot), each master's virtual crop
(a moving 16:9 crop that frames the action region) and each slave. Every tick scores them
by how they frame the action region (:mod:`interest`) and cuts by these rules, in order:

1. Nothing cuts a shot younger than ``min_shot_s`` except a camera that stopped delivering
   (``force_away``, marked forced in the EDL).
2. Nobody in view for ``idle_after_s`` (or no detections for ``detection_timeout_s``):
   the wide shot.
3. Never a jump cut: a shot whose view overlaps the current one by ``jump_cut_iou`` or more,
   or has the same size (within 15 %) and overlaps it by half, is not a candidate; the
   virtual crop following the action is a pan, never a cut.
4. The action left the current shot: cut to the best shot that frames it.
5. A shot framing the action better for ``confirm_s``: cut. It must lead by ``switch_margin``
   times ``target_shot_s / age`` (at least once the margin), so a young shot is hard to
   leave and shots settle around the target length unless the action leaves them.
6. From ``target_shot_s`` on, cut to the best other shot that frames the action nearly as
   well (``rhythm_tolerance``): another size (wide / medium / close) or another camera; from
   ``max_shot_s`` on, to any shot that frames it.

Variety: shots of another size get ``variety_bonus``; a shot left recently gets
``repeat_penalty``; a shot unused for a while gains up to ``freshness_bonus`` (a shot never
used yet 1.5 times that). Every cut carries its reason and the candidates' scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.compositor.director import Cut
from services.compositor.fusion import DetectionFusion
from services.compositor.interest import (
    DEFAULT_WEIGHTS,
    FULL_VIEW,
    ActionRegion,
    ActionTracker,
    Framing,
    InterestWeights,
    frame_score,
    region_on_screen,
    subjects_of,
)
from services.compositor.virtual_camera import DEFAULT_LIMITS, PanZoomCamera, PanZoomLimits
from shared.site_config import ResolvedCamera
from shared.tracker import Box, iou

VIRTUAL = "virtual"
FULL = "full"
IDLE_SCORE = 0.5


@dataclass(frozen=True)
class ShotGrammar:
    min_shot_s: float = 2.0
    target_shot_s: float = 6.0
    max_shot_s: float = 20.0
    confirm_s: float = 0.7
    switch_margin: float = 0.15
    rhythm_tolerance: float = 0.25
    jump_cut_iou: float = 0.7
    variety_bonus: float = 0.1
    repeat_penalty: float = 0.15
    freshness_bonus: float = 0.25
    freshness_s: float = 60.0
    frames_action: float = 0.8
    idle_after_s: float = 3.0
    detection_timeout_s: float = 3.0


@dataclass
class Candidate:
    key: str
    camera: str
    framing: str
    view: Box | None
    size: str  # wide | medium | close
    fit: Framing | None = None
    holds: bool = False  # the action region is on screen in this view

    @property
    def score(self) -> float:
        return self.fit.score if self.fit else 0.0

    @property
    def coverage(self) -> float:
        return self.fit.coverage if self.fit else 0.0

    def label(self) -> str:
        return f"{self.camera} ({VIRTUAL} crop)" if self.framing == VIRTUAL else self.camera


def size_class(view: Box | None) -> str:
    if view is None:
        return "medium"
    width = view[2] - view[0]
    return "wide" if width >= 0.75 else "medium" if width >= 0.4 else "close"


@dataclass
class _State:
    key: str | None = None
    camera: str | None = None
    framing: str = FULL
    start: float = 0.0
    left_at: dict[str, float] = field(default_factory=dict)
    candidate: str | None = None
    candidate_since: float = 0.0
    overrun: str = ""  # why the shot on air was held past the maximum, once it was


class ActionDirector:
    """Follows the action region with the virtual camera, the slaves and the wide shot."""

    def __init__(self, cameras: list[ResolvedCamera], grammar: ShotGrammar, program_width: int = 1920,
                 limits: PanZoomLimits = DEFAULT_LIMITS, weights: InterestWeights = DEFAULT_WEIGHTS,
                 watch_labels: frozenset[str] = frozenset(), virtual: bool = True) -> None:
        if not cameras:
            raise ValueError("the director needs at least one camera")
        self.cameras = cameras
        self.grammar = grammar
        self.weights = weights
        self.watch_labels = watch_labels
        masters = [c for c in cameras if c.is_master]
        self.master = masters[0] if masters else cameras[0]
        self.wide = self.master.id
        self.action = ActionTracker(weights, self.master.width / self.master.height)
        self.pan_zoom = PanZoomCamera(self.master.width, self.master.height, program_width, limits)
        self.virtual_enabled = virtual and self.pan_zoom.can_zoom
        self.state = _State()
        self.region: ActionRegion | None = None
        self.last_scores: dict[str, float] = {}
        self._people_last_seen: float | None = None
        self._last_tick: float | None = None

    # -- what the program needs --------------------------------------------------------------------------
    @property
    def current(self) -> str | None:
        return self.state.camera

    @property
    def current_key(self) -> str | None:
        return self.state.key

    def crop(self) -> Box | None:
        """The virtual crop to show (normalised master box), or None for a whole frame."""
        return self.pan_zoom.rect() if self.state.framing == VIRTUAL else None

    def view(self) -> Box | None:
        """What the program shows now, in the master's coordinates (None: a camera outside the master)."""
        if self.state.framing == VIRTUAL:
            return self.pan_zoom.rect()
        camera = next((c for c in self.cameras if c.id == self.state.camera), None)
        if camera is None:
            return None
        if camera.id == self.master.id:
            return FULL_VIEW
        if camera.covers is not None and camera.covers.master == self.master.id:
            r = camera.covers.region
            return (r.x0, r.y0, r.x1, r.y1)
        return None

    def start(self, now: float) -> Cut:
        self._people_last_seen = None
        return self._cut(now, self._full(self.wide), "program start: wide shot", forced=True, scores={})

    # -- one tick -----------------------------------------------------------------------------------------
    def decide(self, now: float, fusion: DetectionFusion, available: set[str], lost_reason: str = "") -> Cut | None:
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        if self.state.key is None:
            return self.start(now)
        silent = fusion.last_arrival is None or now - fusion.last_arrival > self.grammar.detection_timeout_s
        subjects = [] if silent else subjects_of(self.master, self.cameras, fusion, now, self.weights, self.watch_labels)
        self.region = self.action.update(now, subjects)
        if subjects:
            self._people_last_seen = now
        candidates = self._candidates(available, dt)
        if self.state.camera not in available:
            return self._leave_lost_camera(now, available, candidates, lost_reason)
        age = now - self.state.start
        if age < self.grammar.min_shot_s:
            return None
        if silent:
            return self._go_wide(now, available, "detections stopped: holding the wide shot")
        idle_for = None if self._people_last_seen is None else now - self._people_last_seen
        if idle_for is None or idle_for >= self.grammar.idle_after_s:
            return self._go_wide(now, available, "nobody in view: wide shot")
        if self.region is None:  # people vanished a moment ago: hold until they return or the idle time passes
            return self._hold(age, "nobody was in view (waiting for people to return)")
        return self._by_grammar(now, age, candidates)

    def _hold(self, age: float, why: str) -> Cut | None:
        """No cut this tick; past the maximum shot length, remember why (the cut that ends the shot says it)."""
        if age >= self.grammar.max_shot_s and not self.state.overrun:
            self.state.overrun = why
        return None

    def _by_grammar(self, now: float, age: float, candidates: dict[str, Candidate]) -> Cut | None:
        g = self.grammar
        current = candidates.get(self.state.key or "")
        if current is None:
            return self._hold(age, "the shot on air was no candidate")
        options = [c for c in candidates.values() if c.key != current.key and not self._jump_cut(current, c)]
        if not options:
            return self._hold(age, "every other shot would have been a jump cut")
        adjusted = {c.key: self._adjusted(c, current, now) for c in options}
        best = max(options, key=lambda c: (adjusted[c.key], c.coverage))
        scores = {c.key: c.score for c in candidates.values()}
        holding = [c for c in options if c.holds]
        if not current.holds and holding:
            rescue = max(holding, key=lambda c: (adjusted[c.key], c.coverage))
            return self._cut(now, rescue, f"the action left {current.label()}: {rescue.label()} frames it", False, scores)
        if current.holds:
            options = holding
            if not options:
                return self._hold(age, "no other shot held the action")
            best = max(options, key=lambda c: (adjusted[c.key], c.coverage))
        framing = [c for c in options if c.coverage >= g.frames_action]
        if age >= g.max_shot_s and framing:  # the limit comes first: a challenger still confirming does not delay it
            pick = max(framing, key=lambda c: (adjusted[c.key], c.coverage))
            return self._cut(now, pick, f"held {age:.0f} s (maximum {g.max_shot_s:g} s): {pick.size} shot on {pick.label()}",
                             False, scores)
        if adjusted[best.key] >= current.score + g.switch_margin * max(1.0, g.target_shot_s / max(age, 1e-6)):
            if best.key != self.state.candidate:
                self.state.candidate, self.state.candidate_since = best.key, now
            if now - self.state.candidate_since >= g.confirm_s:
                bonus = adjusted[best.key] - best.score
                extra = f" {bonus:+.2f} variety" if abs(bonus) >= 0.005 else ""
                what = "frames the action better" if best.score > current.score else "gives a fresh view of the action"
                return self._cut(now, best, f"{best.label()} {what} ({best.score:.2f}{extra} vs {current.score:.2f})", False, scores)
            return self._hold(age, "the only better shot did not frame the action whole and was still being confirmed")
        self.state.candidate = None
        if not framing:
            return self._hold(age, f"no other shot framed the action whole (at least {g.frames_action:.0%} of it)")
        pick = max(framing, key=lambda c: (adjusted[c.key], c.coverage))
        varied = [c for c in framing if c.size != current.size or c.camera != current.camera]
        if varied:
            pick = max(varied, key=lambda c: (adjusted[c.key], c.coverage))
        if age >= g.target_shot_s and varied and adjusted[pick.key] >= current.score - g.rhythm_tolerance:
            change = f"{pick.size} shot" if pick.size != current.size else f"another {pick.size} shot"
            return self._cut(now, pick, f"{age:.1f} s on a {current.size} shot: {change} on {pick.label()} for variety",
                             False, scores)
        return None

    def _adjusted(self, candidate: Candidate, current: Candidate, now: float) -> float:
        score = candidate.score
        if candidate.size != current.size:
            score += self.grammar.variety_bonus
        left = self.state.left_at.get(candidate.key)
        if left is not None and now - left < 2 * self.grammar.target_shot_s and candidate.key != self.wide:
            score -= self.grammar.repeat_penalty  # the wide shot is the home base: going back to it is no repeat
        if left is None and candidate.key != self.state.key:
            return score + 1.5 * self.grammar.freshness_bonus  # never on air yet: the freshest shot of all
        unused_for = self.grammar.freshness_s if left is None else now - left
        return score + self.grammar.freshness_bonus * min(1.0, unused_for / self.grammar.freshness_s)

    def _jump_cut_free(self, a: Candidate, b: Candidate) -> bool:
        return not self._jump_cut(a, b)

    def _jump_cut(self, current: Candidate, other: Candidate) -> bool:
        """Almost the same framing: views that overlap by ``jump_cut_iou``, or the same size slid sideways (overlap 0.5)."""
        if current.view is None or other.view is None:
            return False
        overlap = iou(current.view, other.view)
        if overlap >= self.grammar.jump_cut_iou:
            return True
        a, b = current.view[2] - current.view[0], other.view[2] - other.view[0]
        same_size = max(a, b) / max(min(a, b), 1e-6) < 1.15
        return same_size and overlap >= 0.5

    # -- candidates ---------------------------------------------------------------------------------------
    def _candidates(self, available: set[str], dt: float) -> dict[str, Candidate]:
        candidates: dict[str, Candidate] = {}
        for camera in self.cameras:
            if camera.id not in available:
                continue
            candidate = self._full(camera.id)
            candidates[candidate.key] = candidate
        if self.virtual_enabled and self.master.id in available:
            on_air = self.state.framing == VIRTUAL
            if self.region is not None:
                target = self.pan_zoom.target(self.region.box)
                if on_air:
                    self.pan_zoom.step(target, dt)
                else:
                    self.pan_zoom.snap(target)
                view = self.pan_zoom.rect()
                candidates[self._virtual_key()] = Candidate(self._virtual_key(), self.master.id, VIRTUAL, view, size_class(view))
            elif on_air:
                view = self.pan_zoom.rect()
                candidates[self._virtual_key()] = Candidate(self._virtual_key(), self.master.id, VIRTUAL, view, size_class(view))
        virtual = candidates.get(self._virtual_key())
        if virtual is not None and self.state.framing != VIRTUAL and any(
            c.framing == FULL and c.key != self.wide and not self._jump_cut_free(c, virtual) for c in candidates.values()
        ):
            del candidates[virtual.key]  # a real camera already frames the same: prefer its pixels
        for candidate in candidates.values():
            candidate.fit = self._fit(candidate)
            candidate.holds = self.region is not None and candidate.view is not None and region_on_screen(candidate.view, self.region.box)
        self.last_scores = {k: round(c.score, 3) for k, c in candidates.items()}
        return candidates

    def _fit(self, candidate: Candidate) -> Framing | None:
        if self.region is None:
            return Framing(1.0, 0.0, 0, IDLE_SCORE) if candidate.key == self.wide else None
        if candidate.view is None:
            return None
        return frame_score(candidate.view, self.region)

    def _full(self, camera_id: str) -> Candidate:
        camera = next(c for c in self.cameras if c.id == camera_id)
        view: Box | None = None
        if camera.id == self.master.id:
            view = FULL_VIEW
        elif camera.covers is not None and camera.covers.master == self.master.id:
            r = camera.covers.region
            view = (r.x0, r.y0, r.x1, r.y1)
        return Candidate(camera.id, camera.id, FULL, view, size_class(view))

    def _virtual_key(self) -> str:
        return f"{self.master.id}/{VIRTUAL}"

    # -- cuts ---------------------------------------------------------------------------------------------
    def _go_wide(self, now: float, available: set[str], reason: str) -> Cut | None:
        if self.state.key == self.wide or self.wide not in available:
            return None
        return self._cut(now, self._full(self.wide), reason, False, {self.wide: IDLE_SCORE})

    def _leave_lost_camera(self, now: float, available: set[str], candidates: dict[str, Candidate], lost_reason: str) -> Cut | None:
        if not available:
            return None  # nothing to cut to: the program repeats the last picture
        lost = self.state.camera
        if self.wide in available:
            target = self._full(self.wide)
        else:
            target = max((c for c in candidates.values()), key=lambda c: (c.score, c.key))
        return self._cut(now, target, f"camera {lost} lost ({lost_reason or 'frames stopped'}): cut away", True, {})

    def force_away(self, now: float, camera: str, reason: str) -> Cut:
        return self._cut(now, self._full(camera), reason, True, {})

    def _cut(self, now: float, shot: Candidate, reason: str, forced: bool, scores: dict[str, float]) -> Cut:
        if self.state.key is not None:
            self.state.left_at[self.state.key] = now
        if self.state.overrun and self.state.key is not None:
            reason += (f" (the shot before ran {now - self.state.start:.0f} s, past the {self.grammar.max_shot_s:g} s maximum: "
                       f"{self.state.overrun})")
        self.state.overrun = ""
        self.state.key, self.state.camera, self.state.framing, self.state.start = shot.key, shot.camera, shot.framing, now
        self.state.candidate = None
        return Cut(now, shot.camera, reason, forced, {k: round(v, 3) for k, v in scores.items()}, shot.framing)
