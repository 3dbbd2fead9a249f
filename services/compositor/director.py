"""The auto-director: score every camera, then cut with hysteresis.

Masters (wide cameras) say where the action is; each slave covers a declared region of
a master's view. A camera's score says how well it shows the people (how many of them,
how big, how much they move). :class:`ShotStateMachine` turns scores into cuts and is
flicker-proof by construction: ``propose`` returns before any comparison while the
current shot is younger than ``min_shot_s``. A challenger must lead by a margin for
``confirm_s`` (unless the current shot shows nobody at all), and a slave just left is
not cut back to within ``cooldown_s``. The only cut that can end a shot early is
``force_away`` from a camera whose frames stopped, and the EDL says so.

Nothing here reads a clock: callers pass ``now``, so the same director runs live (wall
time) and offline (replaying detection sets faster than real time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.compositor.fusion import CameraActivity, DetectionFusion
from shared.site_config import Region, ResolvedCamera

WIDE_SCORE = 0.55  # a master showing everyone, small: a slave must show them all to beat it


@dataclass(frozen=True)
class Cut:
    time: float
    camera: str
    reason: str
    forced: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    framing: str = "full"  # "virtual": a moving 16:9 crop of the camera (a master)


@dataclass(frozen=True)
class DirectorTiming:
    min_shot_s: float = 4.0
    confirm_s: float = 1.0
    cooldown_s: float = 8.0
    switch_margin: float = 0.1
    idle_after_s: float = 3.0
    detection_timeout_s: float = 3.0


class ShotStateMachine:
    """Hysteresis over score sequences: min shot, confirmation, margin, return cooldown."""

    def __init__(self, timing: DirectorTiming, exempt_from_cooldown: frozenset[str] = frozenset()) -> None:
        self.timing = timing
        self.exempt_from_cooldown = exempt_from_cooldown
        self.current: str | None = None
        self.shot_start = 0.0
        self._candidate: str | None = None
        self._candidate_since = 0.0
        self._left_at: dict[str, float] = {}

    def start(self, now: float, camera: str, reason: str) -> Cut:
        return self._cut(now, camera, reason, forced=True, scores={})

    def propose(self, now: float, scores: dict[str, float], reason: str) -> Cut | None:
        """Cut to the best-scoring camera if every hysteresis rule allows it."""
        if self.current is None or now - self.shot_start < self.timing.min_shot_s:
            return None
        challenger = max(scores, key=lambda camera: (scores[camera], camera == self.current), default=None)
        if (
            challenger is None
            or challenger == self.current
            or scores[challenger] < scores.get(self.current, 0.0) + self.timing.switch_margin
            or self._cooling_down(challenger, now)
        ):
            self._candidate = None
            return None
        if challenger != self._candidate:
            self._candidate, self._candidate_since = challenger, now
        current_is_empty = scores.get(self.current, 0.0) <= 0.0
        if now - self._candidate_since < self.timing.confirm_s and not current_is_empty:
            return None
        return self._cut(now, challenger, reason, forced=False, scores=scores)

    def force_away(self, now: float, camera: str, reason: str) -> Cut:
        """Leave a shot that cannot continue (its camera stopped), whatever its age."""
        return self._cut(now, camera, reason, forced=True, scores={})

    def _cooling_down(self, camera: str, now: float) -> bool:
        if camera in self.exempt_from_cooldown:
            return False
        left = self._left_at.get(camera)
        return left is not None and now - left < self.timing.cooldown_s

    def _cut(self, now: float, camera: str, reason: str, forced: bool, scores: dict[str, float]) -> Cut:
        if self.current is not None:
            self._left_at[self.current] = now
        self.current, self.shot_start = camera, now
        self._candidate = None
        return Cut(now, camera, reason, forced, {k: round(v, 3) for k, v in scores.items()})


@dataclass(frozen=True)
class CameraScore:
    score: float
    shows: int


def score_cameras(cameras: list[ResolvedCamera], fusion: DetectionFusion, now: float) -> dict[str, CameraScore]:
    """Score each camera by how well it shows the people the site sees right now.

    A slave shows a person when its own detector sees them whole (not cut by the frame
    edge) or when the master sees them wholly inside the slave's region; the larger of
    the two counts wins, so either view alone is enough.
    """
    activity = {c.id: fusion.activity(c.id, now) for c in cameras}
    master_people = {c.id: activity[c.id].people for c in cameras if c.is_master}
    shows: dict[str, int] = {}
    for camera in cameras:
        own = sum(1 for box in activity[camera.id].people if not _touches_edge(box))
        if camera.covers is not None:
            region = camera.covers.region
            inside = sum(1 for box in master_people.get(camera.covers.master, ()) if _inside(box, region))
            own = max(own, inside)
        shows[camera.id] = own if not camera.is_master else activity[camera.id].count
    total = max(shows.values(), default=0)
    scores: dict[str, CameraScore] = {}
    for camera in cameras:
        if total == 0:
            scores[camera.id] = CameraScore(WIDE_SCORE if camera.is_master else 0.0, 0)
        elif camera.is_master:
            scores[camera.id] = CameraScore(WIDE_SCORE, shows[camera.id])
        else:
            scores[camera.id] = CameraScore(_slave_score(shows[camera.id] / total, activity[camera.id]), shows[camera.id])
    return scores


def _touches_edge(box: tuple[float, float, float, float], margin: float = 0.01) -> bool:
    return box[0] <= margin or box[1] <= margin or box[2] >= 1 - margin or box[3] >= 1 - margin


def _inside(box: tuple[float, float, float, float], region: Region) -> bool:
    return region.x0 <= box[0] and region.y0 <= box[1] and box[2] <= region.x1 and box[3] <= region.y1


def _slave_score(share: float, activity: CameraActivity) -> float:
    size = min(1.0, activity.mean_height * 4.0)
    motion = min(1.0, activity.speed * 2.0)
    return share * (0.6 + 0.3 * size) + 0.1 * motion * share


class Director:
    """Chooses the program camera at each tick from the fused detection state."""

    def __init__(self, cameras: list[ResolvedCamera], timing: DirectorTiming) -> None:
        if not cameras:
            raise ValueError("the director needs at least one camera")
        self.cameras = cameras
        self.timing = timing
        masters = [c.id for c in cameras if c.is_master]
        self.wide = masters[0] if masters else cameras[0].id
        self.machine = ShotStateMachine(timing, exempt_from_cooldown=frozenset(masters))
        self._people_last_seen: float | None = None
        self.last_scores: dict[str, float] = {}

    @property
    def current(self) -> str | None:
        return self.machine.current

    def crop(self) -> None:
        """This director always shows whole frames."""
        return None

    def start(self, now: float) -> Cut:
        self._people_last_seen = None
        return self.machine.start(now, self.wide, "program start: wide shot")

    def decide(self, now: float, fusion: DetectionFusion, available: set[str], lost_reason: str = "") -> Cut | None:
        """One tick: a Cut when the program should change camera, else None."""
        if self.machine.current is None:
            return self.start(now)
        if self.machine.current not in available:
            return self._leave_lost_camera(now, available, lost_reason)
        silent = fusion.last_arrival is None or now - fusion.last_arrival > self.timing.detection_timeout_s
        if silent:
            self.last_scores = {c: (1.0 if c == self.wide else 0.0) for c in available}
            return self.machine.propose(now, self.last_scores, "detections stopped: holding the wide shot")
        scored = {c: s for c, s in score_cameras(self.cameras, fusion, now).items() if c in available}
        if any(s.shows for s in scored.values()):
            self._people_last_seen = now
        idle = self._people_last_seen is None or now - self._people_last_seen >= self.timing.idle_after_s
        if idle:
            self.last_scores = {c: (WIDE_SCORE if c == self.wide else 0.0) for c in available}
            return self.machine.propose(now, self.last_scores, "nothing happening: default wide shot")
        self.last_scores = {c: s.score for c, s in scored.items()}
        best = max(scored, key=lambda c: scored[c].score)
        total = max(s.shows for s in scored.values())
        if total == 0:
            reason = "nobody in view: wide shot"
        elif best != self.wide:
            reason = f"shows {scored[best].shows} of {total} people"
        else:
            reason = "no closer camera shows everyone: wide shot"
        return self.machine.propose(now, self.last_scores, reason)

    def _leave_lost_camera(self, now: float, available: set[str], lost_reason: str) -> Cut | None:
        if not available:
            return None  # nothing to cut to: the program repeats the last picture
        lost = self.machine.current
        if self.wide in available:
            target = self.wide
        else:
            target = max(sorted(available), key=lambda c: self.last_scores.get(c, 0.0))
        why = lost_reason or "frames stopped"
        return self.machine.force_away(now, target, f"camera {lost} lost ({why}): cut away")
