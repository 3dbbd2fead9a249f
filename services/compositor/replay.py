"""Drives the director offline from a sequence of detection sets, faster than real time.

The program clock ticks at ``fps`` from ``start`` to ``end``; each detection set is
folded in once the clock passes its arrival time, exactly as the live program does,
so a replay's cuts are the cuts the live program would have made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.compositor.director import Cut, Director, DirectorTiming
from services.compositor.fusion import DetectionFusion
from shared.schemas import DetectionSet
from shared.site_config import ResolvedCamera


@dataclass(frozen=True)
class TimedDetections:
    arrival_ts: float
    detections: DetectionSet


def replay(
    cameras: list[ResolvedCamera],
    timing: DirectorTiming,
    detections: Iterable[TimedDetections],
    start: float,
    end: float,
    fps: float = 10.0,
    available: Callable[[float], set[str]] | None = None,
    fusion: DetectionFusion | None = None,
    director: Director | None = None,
) -> list[Cut]:
    """All cuts of a program from ``start`` to ``end`` (the first is the opening shot).

    ``director`` replaces the default one (the "everyone visible" :class:`Director`)."""
    fusion = fusion or DetectionFusion(track_max_age_s=1.5)
    director = director or Director(cameras, timing)
    pending = sorted(detections, key=lambda item: item.arrival_ts)
    all_cameras = {c.id for c in cameras}
    cuts: list[Cut] = []
    index, tick = 0, 0
    while (now := start + tick / fps) <= end:
        while index < len(pending) and pending[index].arrival_ts <= now:
            fusion.add(pending[index].detections, pending[index].arrival_ts)
            index += 1
        cut = director.decide(now, fusion, available(now) if available else all_cameras)
        if cut is not None:
            cuts.append(cut)
        tick += 1
    return cuts
