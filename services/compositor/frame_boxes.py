"""The boxes to draw over one particular frame of a camera.

The program runs a constant delay behind capture, so by the time a frame is shown its own
detections have usually arrived: those are drawn. For a frame no detector looked at (edge_infer
publishes its tracker's guesses for those), each track's box is interpolated between the
detections before and after that frame (or, past the newest one, extrapolated a short way), so
boxes stay on their people between detections.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.compositor.fusion import DetectionFusion, Observation, Sighting, SightingsAround
from shared.schemas import Detection
from shared.tracker import Box, Track

MAX_EXTRAPOLATION_S = 0.25
MAX_PAIRING_JUMP = 0.15  # normalised centre distance within which a split track's pieces are joined (as the tracker's)
SIGHTING_WINDOW_S = 1.5  # how far around a frame to look for its tracks' detections (edge_infer carries a track this long)


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
    time tolerance), else (a frame the detector skipped, or edge_infer only carried its boxes onto) the tracks' boxes at its
    capture time, interpolated between the detections before and after it."""
    observation = fusion.observation_of(camera_id, capture_ts, frame_id)
    if observation is not None and not observation.carried:
        return FrameBoxes(observation.detections, (observation.width, observation.height), False)
    around = fusion.sightings_around(camera_id, capture_ts, SIGHTING_WINDOW_S)
    if around.before or around.after:  # the edge tracks its boxes: follow its tracks
        return FrameBoxes(_between_sightings(around, capture_ts, observation, width, height), (width, height), True)
    state = fusion.cameras.get(camera_id)
    if state is None:
        return None
    predicted = []
    for track in state.tracker.tracks:
        box = box_at(track, capture_ts)
        if box is not None:
            label, edge_track_id = fusion.identity(camera_id, track.track_id)
            predicted.append(Detection(label=label, score=0.0, box=(box[0] * width, box[1] * height, box[2] * width, box[3] * height),
                                       tracked=True, track_id=edge_track_id))
    if not predicted and observation is not None:  # no detection near enough on either side: edge_infer's guess is all there is
        return FrameBoxes(observation.detections, (observation.width, observation.height), True)
    return FrameBoxes(predicted, (width, height), True)


def _between_sightings(around: SightingsAround, ts: float, carried: Observation | None, width: int, height: int) -> list[Detection]:
    """Each edge track's box at ``ts``: interpolated between its detections before and after; where no later detection
    has arrived yet, edge_infer's own guess for this frame (else the last box, briefly); a track missing from the
    detections that followed is gone, but for edge_infer's guess within MAX_EXTRAPOLATION_S of its last detection."""
    guesses = {d.track_id: d for d in (carried.detections if carried else []) if d.track_id is not None}
    successors = _successors(around)
    drawn = []
    for track_id, seen in around.before.items():
        following = successors.get(track_id)
        if following is not None:
            share = 0.0 if following.capture_ts <= seen.capture_ts else (ts - seen.capture_ts) / (following.capture_ts - seen.capture_ts)
            box = tuple(a + share * (b - a) for a, b in zip(seen.box, following.box))
        elif track_id in guesses and carried is not None and (not around.detected_later or ts - seen.capture_ts <= MAX_EXTRAPOLATION_S):
            x0, y0, x1, y1 = guesses[track_id].box
            box = (x0 / carried.width, y0 / carried.height, x1 / carried.width, y1 / carried.height)
        elif not around.detected_later and ts - seen.capture_ts <= MAX_EXTRAPOLATION_S:
            box = seen.box
        else:
            continue
        drawn.append(Detection(label=seen.label, score=0.0, box=(box[0] * width, box[1] * height, box[2] * width, box[3] * height),
                               tracked=True, track_id=track_id))
    return drawn


def _successors(around: SightingsAround) -> dict[int, Sighting]:
    """Each track's next sighting: by its id, else (the edge's tracker split it, e.g. a car detected as a truck next
    time) the nearest unclaimed later sighting whose centre lies within MAX_PAIRING_JUMP of it."""
    successors = {track_id: around.after[track_id] for track_id in around.before if track_id in around.after}
    unclaimed = {track_id: seen for track_id, seen in around.after.items() if track_id not in around.before}
    for track_id, seen in around.before.items():
        if track_id in successors or not unclaimed:
            continue
        nearest = min(unclaimed, key=lambda other: _centre_distance(seen.box, unclaimed[other].box))
        if _centre_distance(seen.box, unclaimed[nearest].box) <= MAX_PAIRING_JUMP:
            successors[track_id] = unclaimed.pop(nearest)
    return successors


def _centre_distance(a: Box, b: Box) -> float:
    return float(((a[0] + a[2] - b[0] - b[2]) ** 2 + (a[1] + a[3] - b[1] - b[3]) ** 2) ** 0.5 / 2)
