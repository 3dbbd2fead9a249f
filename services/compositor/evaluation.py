"""Runs a director offline over timed detection sets and measures the cut it makes.

The same action region (interest clusters, :mod:`interest`) is computed beside whichever
director runs, so the new director and the old "everyone visible" rule are judged by one
yardstick: shot lengths, cuts per minute, short shots, the share of time the picture holds
the action region while anyone is in view, time per camera, and the virtual camera's pan
acceleration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from services.compositor.director import Cut, Director
from services.compositor.fusion import DetectionFusion
from services.compositor.interest import (
    DEFAULT_WEIGHTS,
    FULL_VIEW,
    ActionRegion,
    ActionTracker,
    InterestWeights,
    frame_score,
    region_on_screen,
    subjects_of,
)
from services.compositor.replay import TimedDetections
from services.compositor.shot_grammar import VIRTUAL, ActionDirector
from shared.site_config import ResolvedCamera
from shared.tracker import Box

HISTOGRAM_EDGES = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, float("inf"))
SHORT_SHOT_S = 2.0


@dataclass(frozen=True)
class Tick:
    t: float
    shot: str
    view: Box | None
    region: Box | None
    anyone: bool
    crop_centre: tuple[float, float] | None  # master px, while the virtual crop is on air


@dataclass(frozen=True)
class EvalShot:
    start: float
    end: float
    shot: str
    camera: str
    framing: str
    reason: str
    forced: bool

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class EvalReport:
    name: str
    seconds: float
    shots: list[EvalShot]
    ticks: list[Tick] = field(repr=False)
    jerk_bound: float = 0.0  # master px/s^2
    framing_shots: set[str] = field(default_factory=set)

    @property
    def durations(self) -> np.ndarray:
        return np.array([s.duration for s in self.shots])

    @property
    def average_shot_s(self) -> float:
        return float(self.durations.mean()) if self.shots else 0.0

    @property
    def median_shot_s(self) -> float:
        return float(np.median(self.durations)) if self.shots else 0.0

    @property
    def cuts_per_minute(self) -> float:
        return (len(self.shots) - 1) * 60.0 / self.seconds if self.seconds > 0 else 0.0

    def histogram(self) -> list[tuple[str, int]]:
        counts = np.histogram(self.durations, bins=np.array(HISTOGRAM_EDGES))[0] if self.shots else [0] * (len(HISTOGRAM_EDGES) - 1)
        labels = [f"{a:g}-{b:g} s" if b != float("inf") else f">{a:g} s" for a, b in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:])]
        return list(zip(labels, [int(c) for c in counts]))

    def short_shots(self) -> tuple[int, int]:
        """(shots under 2 s that ended by a score-driven cut, those that ended by a forced one); the last shot is open."""
        short = unforced = 0
        for shot, following in zip(self.shots, self.shots[1:]):
            if shot.duration < SHORT_SHOT_S - 1e-6:
                short += 1
                unforced += not following.forced
        return unforced, short - unforced

    @property
    def action_on_screen(self) -> float:
        """Share of the ticks with anyone in view whose picture contains the action region."""
        relevant = [t for t in self.ticks if t.anyone and t.region is not None]
        if not relevant:
            return 1.0
        shown = sum(1 for t in relevant if t.view is not None and t.region is not None and region_on_screen(t.view, t.region))
        return shown / len(relevant)

    def camera_share(self) -> dict[str, float]:
        counts = Counter(t.shot for t in self.ticks)
        total = sum(counts.values()) or 1
        return {shot: counts[shot] / total for shot in sorted(counts)}

    def pan_acceleration(self) -> np.ndarray:
        """Per-axis pan accelerations (master px/s^2) of the virtual crop, from consecutive on-air ticks."""
        values: list[float] = []
        run: list[Tick] = []
        for tick in self.ticks + [Tick(0, "", None, None, False, None)]:
            if tick.crop_centre is not None and run and run[-1].shot == tick.shot:
                run.append(tick)
                continue
            for a, b, c in zip(run, run[1:], run[2:]):
                dt = (c.t - a.t) / 2
                if dt > 0:
                    for axis in (0, 1):
                        values.append(abs(c.crop_centre[axis] - 2 * b.crop_centre[axis] + a.crop_centre[axis]) / dt**2)  # type: ignore[index]
            run = [tick] if tick.crop_centre is not None else []
        return np.array(values)

    @property
    def jerk_p95(self) -> float:
        values = self.pan_acceleration()
        return float(np.percentile(values, 95)) if values.size else 0.0

    @property
    def used_shots(self) -> set[str]:
        return {s.shot for s in self.shots}

    def as_dict(self) -> dict:
        unforced, forced = self.short_shots()
        return {
            "name": self.name, "seconds": round(self.seconds, 1), "shots": len(self.shots),
            "average_shot_s": round(self.average_shot_s, 2), "median_shot_s": round(self.median_shot_s, 2),
            "cuts_per_minute": round(self.cuts_per_minute, 2), "short_unforced": unforced, "short_forced": forced,
            "action_on_screen": round(self.action_on_screen, 3), "camera_share": {k: round(v, 3) for k, v in self.camera_share().items()},
            "pan_accel_p95": round(self.jerk_p95, 1), "pan_accel_bound": round(self.jerk_bound, 1),
            "framing_shots": sorted(self.framing_shots), "unused_framing_shots": sorted(self.framing_shots - self.used_shots),
            "histogram": self.histogram(),
        }


def frames_whole(view: Box, region: ActionRegion, frames_action: float) -> bool:
    """A view frames the action when it holds the region and shows its subjects whole (as the director judges it)."""
    return region_on_screen(view, region.box) and frame_score(view, region).coverage >= frames_action


def shot_key(cut: Cut) -> str:
    return f"{cut.camera}/{VIRTUAL}" if cut.framing == VIRTUAL else cut.camera


def _view_of(camera: ResolvedCamera | None, master: str) -> Box | None:
    if camera is None:
        return None
    if camera.id == master:
        return FULL_VIEW
    if camera.covers is not None and camera.covers.master == master:
        r = camera.covers.region
        return (r.x0, r.y0, r.x1, r.y1)
    return None


def evaluate(name: str, cameras: list[ResolvedCamera], director: ActionDirector | Director, detections: Iterable[TimedDetections],
             start: float, end: float, fps: float = 10.0, labels: frozenset[str] = frozenset({"person"}),
             weights: InterestWeights = DEFAULT_WEIGHTS, frames_action: float = 0.8, min_framing_s: float = 2.0) -> EvalReport:
    """Tick the director from ``start`` to ``end`` and record what the program shows."""
    fusion = DetectionFusion(labels=labels, track_max_age_s=1.5)
    masters = [c for c in cameras if c.is_master]
    master = masters[0] if masters else cameras[0]
    by_id = {c.id: c for c in cameras}
    tracker = ActionTracker(weights, master.width / master.height)
    pending = sorted(detections, key=lambda item: item.arrival_ts)
    available = set(by_id)
    cuts: list[Cut] = []
    ticks: list[Tick] = []
    framing_shots: set[str] = set()
    framing_since: dict[str, float] = {}
    index, tick_no = 0, 0
    while (now := start + tick_no / fps) <= end:
        while index < len(pending) and pending[index].arrival_ts <= now:
            fusion.add(pending[index].detections, pending[index].arrival_ts)
            index += 1
        cut = director.decide(now, fusion, available)
        if cut is not None:
            cuts.append(cut)
        subjects = subjects_of(master, cameras, fusion, now, weights)
        region = tracker.update(now, subjects)
        on_air = cuts[-1]
        key = shot_key(on_air)
        crop = director.crop()
        view = crop if crop is not None else _view_of(by_id.get(on_air.camera), master.id)
        centre = None
        if crop is not None and isinstance(director, ActionDirector):
            centre = director.pan_zoom.centre_px
        for camera in cameras:  # a shot "frames the action" once it held it whole for a minimum shot length
            candidate_view = _view_of(camera, master.id)
            if region is not None and candidate_view is not None and frames_whole(candidate_view, region, frames_action):
                since = framing_since.setdefault(camera.id, now)
                if now - since >= min_framing_s:
                    framing_shots.add(camera.id)
            else:
                framing_since.pop(camera.id, None)
        if region is not None and isinstance(director, ActionDirector) and director.virtual_enabled:
            framing_shots.add(f"{master.id}/{VIRTUAL}")
        ticks.append(Tick(now - start, key, view, region.box if region else None, bool(subjects), centre))
        tick_no += 1
    shots = [
        EvalShot(cut.time - start, (following.time if following else end) - start, shot_key(cut), cut.camera, cut.framing, cut.reason,
                 cut.forced)
        for cut, following in zip(cuts, [*cuts[1:], None])
    ]
    bound = 0.0
    if isinstance(director, ActionDirector):
        bound = director.pan_zoom.limits.max_accel * master.width
    return EvalReport(name, end - start, shots, ticks, bound, framing_shots)


def format_report(new: EvalReport, old: EvalReport) -> str:
    """The two directors side by side, as a plain-text table."""
    a, b = new.as_dict(), old.as_dict()
    rows = [
        ("shots", a["shots"], b["shots"]),
        ("average shot length", f"{a['average_shot_s']:.1f} s", f"{b['average_shot_s']:.1f} s"),
        ("median shot length", f"{a['median_shot_s']:.1f} s", f"{b['median_shot_s']:.1f} s"),
        ("cuts per minute", f"{a['cuts_per_minute']:.1f}", f"{b['cuts_per_minute']:.1f}"),
        ("shots under 2 s (unforced / forced)", f"{a['short_unforced']} / {a['short_forced']}", f"{b['short_unforced']} / {b['short_forced']}"),
        ("action region on screen (anyone in view)", f"{a['action_on_screen']:.0%}", f"{b['action_on_screen']:.0%}"),
        ("pan acceleration p95 (bound)", f"{a['pan_accel_p95']:.0f} px/s2 ({a['pan_accel_bound']:.0f})", "no virtual camera"),
        ("shots that framed the action, unused", ", ".join(a["unused_framing_shots"]) or "none", ", ".join(b["unused_framing_shots"]) or "none"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{new.name}: {new.seconds:.0f} s of program", f"  {'':<{width}}  {'action director':>24}  {'old: everyone visible':>24}"]
    lines += [f"  {label:<{width}}  {str(x):>24}  {str(y):>24}" for label, x, y in rows]
    lines.append("  share of program time per shot:")
    for shot in sorted(set(a["camera_share"]) | set(b["camera_share"])):
        lines.append(f"    {shot:<{width - 2}}  {a['camera_share'].get(shot, 0):>24.0%}  {b['camera_share'].get(shot, 0):>24.0%}")
    lines.append("  shot-length histogram (action director | old):")
    for (label, x), (_, y) in zip(a["histogram"], b["histogram"]):
        lines.append(f"    {label:>9} {'#' * x:<20} {x:>3} | {y:>3} {'#' * y}")
    return "\n".join(lines)
