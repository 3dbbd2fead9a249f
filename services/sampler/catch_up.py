"""Deliberate decimation when the sampler falls behind capture's rings.

A master frame waits in its stream (and for its edge result) before the sampler reads its pixels from the
ring, which capture overwrites about a second after writing it. A sampler that cannot keep up (a starved
CPU, a burst of work) would otherwise race capture and lose whichever frames it happened to reach too late.
Instead, while a camera's frames are read later than ``share`` of what their ring can afford (its span less the
wait for their edge result that still follows; at least 0.25 s) after capture, only one
in ``every`` of them is evaluated (by sequence number, so the choice is even), ``every`` growing while the
sampler stays behind and shrinking once it has caught up. The skipped frames are counted as not evaluated
(``skipped_decimated``) and the health message states the rate; nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("sampler")

MAX_EVERY = 16
ADJUST_S = 0.5  # the rate changes at most this often per camera
MIN_BACKLOG_S = 0.25  # a backlog shorter than this is no reason to decimate


@dataclass
class _Camera:
    every: int = 1
    adjusted_at: float = 0.0
    age_s: float = 0.0


class CatchUp:
    def __init__(self, share: float = 0.75) -> None:
        self.share = share
        self.cameras: dict[str, _Camera] = {}

    def skip(self, camera_id: str, seq: int, age_s: float, ring_span_s: float | None, now: float, wait_s: float = 0.0) -> bool:
        """Whether to skip this frame on purpose. ``age_s``: capture to the sampler reading the frame's entry (its
        backlog); ``ring_span_s``: how long the ring keeps a frame; ``wait_s``: how long a frame may still wait after
        being read (for its edge result). A ring shorter than the wait is no backlog: decimating would not help."""
        state = self.cameras.setdefault(camera_id, _Camera())
        state.age_s = age_s
        if ring_span_s is not None and now - state.adjusted_at >= ADJUST_S:
            limit = max(MIN_BACKLOG_S, self.share * (ring_span_s - wait_s))
            if age_s > limit and state.every < MAX_EVERY:
                state.every, state.adjusted_at = state.every + 1, now
                if state.every == 2:
                    log.warning("camera %s: master frames reach the sampler %.2f s after capture, its ring keeps %.2f s: "
                                "evaluating 1 in %d until it catches up", camera_id, age_s, ring_span_s, state.every)
            elif age_s < limit / 2 and state.every > 1:
                state.every, state.adjusted_at = state.every - 1, now
                if state.every == 1:
                    log.info("camera %s: caught up, every master frame evaluated again", camera_id)
        return state.every > 1 and seq % state.every != 0

    def decimating(self) -> dict[str, int]:
        """Camera -> 1 in how many master frames are evaluated, for the cameras being decimated now."""
        return {camera_id: state.every for camera_id, state in self.cameras.items() if state.every > 1}

    def describe(self) -> str:
        parts = [f"{camera_id} 1 in {every} ({self.cameras[camera_id].age_s:.2f} s behind capture)"
                 for camera_id, every in sorted(self.decimating().items())]
        return ("decimating, behind the frame rings: " + ", ".join(parts)) if parts else ""
