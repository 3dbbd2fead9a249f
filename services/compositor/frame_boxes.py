"""The boxes to draw over one particular frame of a camera.

The program runs a constant delay behind capture, so by the time a frame is shown its own
detections have usually arrived: those are drawn. For a frame no detector looked at, each
track's box is interpolated between the observations before and after that frame (or, past
the newest one, extrapolated a short way), so boxes stay on their people between detections.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.compositor.fusion import DetectionFusion
from shared.schemas import Detection
from shared.tracker import Box, Track

MAX_EXTRAPOLATION_S = 0.25


@dataclass(frozen=True)
class FrameBoxes:
    detections: list[Detection]
    size: tuple[int, int]  # width, height the boxes refer to
    predicted: bool  # True: from tracks, not from a detector run on this frame


def box_at(track: Track, ts: float) -> Box | None:
    """The track's box at capture time ``ts``: interpolated between observations, briefly extrapolated past the last."""
    history = list(track.history)
    if not history or ts < history[0][0] - 1e-6:
        return None
    for (t0, b0), (t1, b1) in zip(history, history[1:]):
        if t0 <= ts <= t1:
            share = 0.0 if t1 <= t0 else (ts - t0) / (t1 - t0)
            return tuple(a + share * (b - a) for a, b in zip(b0, b1))
    last_t, last_box = history[-1]
    ahead = ts - last_t
    if ahead > MAX_EXTRAPOLATION_S:
        return None
    if len(history) < 2 or ahead <= 0:
        return last_box
    prev_t, prev_box = history[-2]
    if last_t - prev_t <= 0 or last_t - prev_t > 2.0:
        return last_box
    rate = ahead / (last_t - prev_t)
    return tuple(b + rate * (b - a) for a, b in zip(prev_box, last_box))


def boxes_for_frame(fusion: DetectionFusion, camera_id: str, capture_ts: float, width: int, height: int,
                    frame_id: str = "") -> FrameBoxes | None:
    """The frame's own detections (matched by frame id when given: at 50-60 fps the neighbouring frame lies within the
    time tolerance), else the tracks' boxes at its capture time."""
    observation = fusion.observation_of(camera_id, capture_ts, frame_id)
    if observation is not None:
        return FrameBoxes(observation.detections, (observation.width, observation.height), False)
    state = fusion.cameras.get(camera_id)
    if state is None:
        return None
    predicted = []
    for track in state.tracker.tracks:
        box = box_at(track, capture_ts)
        if box is not None:
            predicted.append(Detection(label="person", score=0.0, box=(box[0] * width, box[1] * height, box[2] * width, box[3] * height)))
    return FrameBoxes(predicted, (width, height), True)
