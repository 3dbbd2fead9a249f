"""Which master frames go to the cloud: the sampling policies behind one small interface.

The sampler offers every master frame to the policy, in capture order per camera, with what is
known about it: the frame (for change features, when the policy looks at pixels) and a summary
of the edge detector's result for that frame (None when none arrived in time). The policy answers
with verdicts: send, skip (with the reason, so every decision is counted) or hold. A held frame
waits for the site-wide budget; a later verdict sends it or skips it. Time is the frames' capture
time, so a replay of recorded footage (``hybridcam sampling-eval``) decides exactly as live.

- ``every_nth``: frames whose sequence number is a multiple of N (the baseline).
- ``adaptive``: where the edge tracks its objects (its boxes carry track ids), send when it holds a
  well-visible watch-label track no sent frame has covered yet (``new_object``), picking within the
  rate window the frame that covers the most uncovered tracks, best visible (a greedy cover); a track
  the cloud's answer did not confirm goes once more when well visible (``recheck``); a new track that starts
  where the cloud's answer found an object no track accounted for is that object (adopted, not sent); send on change
  only while the edge sees no watch-label object (a dark or blind edge), on an unsure detection of an
  uncovered track, or as a heartbeat. Without track ids it falls back to counts: send when the scene
  changed since the last frame *sent* for that camera, when the edge is unsure about a watch label,
  when the number of watch-label objects changed (appeared / left), or as a heartbeat. Either way a
  change where the cloud found watch-label objects in the last sent frame does not count, at most
  ``max_fps`` per camera, ever more rarely for a scene that keeps
  changing (a busy spell backs off), and, optionally, within a site-wide budget (token bucket) where
  the most informative candidate of the window wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import cv2
import numpy as np

from services.sampler.settings import SamplerSettings
from shared.scene_change import ChangeFeatures, KeptFrame, SceneChangeDetector, SceneChangeSettings
from shared.schemas import FrameRef
from shared.site_config import ResolvedCamera
from shared.tracker import greedy_iou_pairs

SEND_REASONS = ("new_object", "recheck", "changed", "unsure", "appeared", "left", "heartbeat", "every_nth")
SKIP_REASONS = ("unchanged", "rate", "budget", "not_nth")
POLICY_NAMES = ("adaptive", "every_nth")

Verb = Literal["send", "skip", "hold"]


Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 normalised to the frame (0..1)"""
EDGE_MARGIN = 0.01
"""a box this close to the frame's border is cut by it (part of the object is out of view)"""


@dataclass(frozen=True, slots=True)
class EdgeTrack:
    """One watch-label object the edge tracks, in one frame."""

    track_id: int
    quality: float
    """how well the cloud would see it in this frame: 1 = well visible (sure score, large enough,
    not cut by the frame's border), less for each that fails"""
    unsure: bool = False
    """its score lies in the unsure band"""
    label: str = ""
    box: Box = (0.0, 0.0, 0.0, 0.0)

    @property
    def well_visible(self) -> bool:
        return self.quality >= 0.999


def visibility(score: float, box: Box, sure_score: float, min_size: float) -> float:
    """A track's quality in one frame (EdgeTrack.quality) from its score and normalised box."""
    x0, y0, x1, y1 = box
    size = max(0.0, (x1 - x0) * (y1 - y0)) ** 0.5
    cut = x0 <= EDGE_MARGIN or y0 <= EDGE_MARGIN or x1 >= 1 - EDGE_MARGIN or y1 >= 1 - EDGE_MARGIN
    return min(1.0, score / sure_score) * min(1.0, size / min_size) * (0.5 if cut else 1.0)


def edge_tracks(detections: Iterable[tuple[str, float, Box, int | None]], watch_labels: frozenset[str],
                unsure_band: tuple[float, float], min_size: float) -> tuple[EdgeTrack, ...] | None:
    """The frame's watch-label tracks (label, score, normalised box, track id each); None when a
    watch-label detection has no track id: that edge does not track, and the policy counts instead."""
    tracks: dict[int, EdgeTrack] = {}
    low, high = unsure_band
    for label, score, box, track_id in detections:
        if label not in watch_labels or score < low:
            continue
        if track_id is None:
            return None
        track = EdgeTrack(track_id, visibility(score, box, high, min_size), score <= high, label, box)
        if track_id not in tracks or track.quality > tracks[track_id].quality:
            tracks[track_id] = track
    return tuple(tracks.values())


@dataclass(frozen=True, slots=True)
class EdgeSummary:
    """What the edge detector said about one frame, reduced to what the policy uses."""

    watch_count: int
    """confident watch-label detections (score above the unsure band)"""
    unsure: float
    """0 when no watch-label score lies in the unsure band, else how close the closest one is to
    the band's middle (1 = exactly in the middle)"""
    unsure_count: int = 0
    """watch-label detections inside the unsure band"""
    tracks: tuple[EdgeTrack, ...] | None = None
    """the watch-label objects the edge tracks in this frame; None when its boxes carry no track ids"""

    @classmethod
    def of(cls, detections: Iterable[tuple[str, float]], watch_labels: frozenset[str],
           unsure_band: tuple[float, float], tracks: tuple[EdgeTrack, ...] | None = None) -> EdgeSummary:
        low, high = unsure_band
        middle, half = (low + high) / 2, max((high - low) / 2, 1e-6)
        count, unsure, unsure_count = 0, 0.0, 0
        for label, score in detections:
            if label not in watch_labels or score < low:
                continue
            if score > high:
                count += 1
            else:  # in the band: at least a little unsure, most at its middle
                unsure = max(unsure, 1.0 - abs(score - middle) / half, 1e-3)
                unsure_count += 1
        return cls(count, unsure, unsure_count, tracks)


@dataclass(frozen=True, slots=True)
class FrameFacts:
    """One master frame offered to a policy."""

    token: object
    """the caller's handle for the frame (the sampler's stream entry, the evaluator's frame index)"""
    camera_id: str
    seq: int
    ts: float
    """capture time, epoch seconds (or seconds into a recording)"""
    edge: EdgeSummary | None = None
    """the edge detector's result for this frame; None when none arrived in time"""


@dataclass(frozen=True, slots=True)
class Verdict:
    token: object
    verb: Verb
    reason: str
    """a SEND_REASONS entry for send, SKIP_REASONS for skip, the candidate's reason for hold"""
    camera_id: str = ""
    ts: float = 0.0
    """capture time of the frame this verdict is about"""


class SamplingPolicy(Protocol):
    name: str
    needs_pixels: bool
    """offer() wants the frame's pixels (change features)"""
    needs_edge: bool
    """offer() uses the edge result, so the sampler waits a bounded time for it"""

    def offer(self, facts: FrameFacts, pixels: np.ndarray | None) -> list[Verdict]:
        """Verdicts now due: usually one for this frame; with a budget, maybe one for a held frame."""
        ...

    def poll(self, now: float) -> list[Verdict]:
        """Verdicts due without a new frame (a held frame the budget now lets through)."""
        ...

    def learn(self, camera_id: str, capture_ts: float, watch_count: int, boxes: Sequence[Box] | None = None) -> None:
        """The cloud's answer for a frame sent earlier: how many watch-label objects it found (and where,
        normalised boxes, when known)."""
        ...

    def describe(self) -> str: ...


class EveryNthFrame:
    """Send frames whose sequence number is a multiple of N (the camera's cloud_sample_every).

    Deciding by sequence number, not by a local count, keeps the choice the same after a
    sampler restart or a replay of the stream.
    """

    name = "every_nth"
    needs_pixels = False
    needs_edge = False

    def __init__(self, every: int | None = None, per_camera: Mapping[str, int] | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError("every must be at least 1")
        self.every = every
        self.per_camera = dict(per_camera or {})

    def interval(self, camera: ResolvedCamera) -> int:
        return self.every or camera.cloud_sample_every

    def should_send(self, camera: ResolvedCamera, ref: FrameRef) -> bool:
        return ref.seq % self.interval(camera) == 0

    def offer(self, facts: FrameFacts, pixels: np.ndarray | None) -> list[Verdict]:
        every = self.every or self.per_camera.get(facts.camera_id, 1)
        if facts.seq % every == 0:
            return [Verdict(facts.token, "send", "every_nth", facts.camera_id, facts.ts)]
        return [Verdict(facts.token, "skip", "not_nth", facts.camera_id, facts.ts)]

    def poll(self, now: float) -> list[Verdict]:
        return []

    def learn(self, camera_id: str, capture_ts: float, watch_count: int, boxes: Sequence[Box] | None = None) -> None:
        return

    def describe(self) -> str:
        return f"every {self.every}th frame" if self.every else "every Nth frame (each camera's cloud_sample_every)"


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    change: SceneChangeSettings = field(default_factory=SceneChangeSettings)
    watch_labels: frozenset[str] = frozenset({"person", "car", "truck", "bus", "motorcycle", "bicycle"})
    unsure_band: tuple[float, float] = (0.35, 0.5)
    """an edge watch-label score in this band makes the frame a candidate (the edge is not sure)"""
    unsure_min_change: float = 0.5
    """an unsure frame counts only if the scene changed at least this much (share of the change
    threshold) since the last sent frame: the cloud has already seen a near-identical picture"""
    count_changes: bool = True
    """send when the number of watch-label objects differs from the last sent frame's"""
    count_confirm_frames: int = 2
    """... for this many frames in a row (one frame of detector flicker is not an arrival)"""
    track_driven: bool = True
    """where the edge's boxes carry track ids, send for tracks no sent frame covered (else: counts)"""
    track_min_size: float = 0.04
    """a track is well visible from this size (square root of its box's share of the frame) ..."""
    track_patience_s: float = 0.5
    """... and one that is not (cut by the border, small, unsure) is sent for after this long anyway"""
    track_memory_s: float = 30.0
    """a covered track not seen for this long is forgotten (bounded state)"""
    recheck_unconfirmed: bool = True
    """when the cloud found fewer watch-label objects in a sent frame than the edge tracks it showed, the
    shortfall's worst-seen tracks that the edge doubted too (not well visible) count as uncovered again, and go
    once more when well visible (``recheck``; once per track)"""
    max_fps: float = 1.0
    """per camera"""
    busy_backoff: float = 2.5
    """in a scene that keeps changing, each 'changed' send after the cloud found watch-label objects
    in the same busy spell waits this many times longer than the one before (1/max_fps, x, x^2, ...
    up to max_interval_s): objects the cloud has already seen moving about tell it little new, while a
    change the cloud found nothing in is checked again at max_fps; 1 turns it off"""
    settle_s: float = 2.0
    """a busy spell ends after the scene held still (or matched the last sent frame) this long"""
    still_motion: float = 0.002
    """the scene is still while less than this share of its pixels moved since it last moved"""
    max_interval_s: float = 30.0
    """heartbeat: send at least this often per camera"""
    budget_images_per_hour: float = 0.0
    """site-wide; 0 = no budget"""
    budget_burst: float = 10.0
    """images the budget lets through at once after a quiet spell"""

    def __post_init__(self) -> None:
        low, high = self.unsure_band
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("the unsure band must be two scores 0 <= low < high <= 1")
        if self.max_fps <= 0 or self.max_interval_s <= 0:
            raise ValueError("max_fps and max_interval_s must be positive")
        if self.busy_backoff < 1 or self.settle_s < 0 or not 0 < self.still_motion <= 1:
            raise ValueError("busy_backoff must be at least 1, settle_s at least 0 and still_motion a share in (0, 1]")
        if self.count_confirm_frames < 1:
            raise ValueError("count_confirm_frames must be at least 1")
        if not 0 < self.track_min_size <= 1 or self.track_patience_s < 0 or self.track_memory_s <= 0:
            raise ValueError("track_min_size must be a share in (0, 1], track_patience_s >= 0 and track_memory_s > 0")
        if self.budget_images_per_hour < 0 or self.budget_burst < 1:
            raise ValueError("the budget must be >= 0 images per hour with a burst of at least 1")


class TokenBucket:
    """Images the budget allows: `rate` per second, at most `burst` saved up."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated: float | None = None

    def refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class CameraState:
    detector: SceneChangeDetector
    last_sent_ts: float | None = None
    last_sent_count: int | None = None
    count_streak: int = 0
    """frames in a row whose watch-label count differs from the last sent frame's"""
    busy_sends: int = 0
    """frames of the current busy spell in which the cloud found watch-label objects (the backoff's exponent)"""
    spell_start_ts: float = float("-inf")
    """capture time from which the current busy spell counts"""
    cloud_count: int | None = None
    """watch-label objects the cloud found in the last sent frame (None until its answer comes)"""
    last_change_ts: float | None = None
    """capture time of the newest frame that differed from the last sent one"""
    last_motion_ts: float | None = None
    """capture time of the newest frame in which the scene moved"""
    tracking: bool = False
    """the edge's boxes for this camera carry track ids (the track-driven rules apply)"""
    tracks_seen: dict[int, TrackSeen] = field(default_factory=dict)
    """edge tracks of this camera: when first and last seen, in how many frames"""
    covered: dict[int, float] = field(default_factory=dict)
    """edge track ids a sent frame showed (the cloud answers about them), with the time of that frame"""
    rate_held: Candidate | None = None
    """the best frame for uncovered tracks while the rate window is closed (sent when it opens)"""
    shown: dict[float, tuple[EdgeTrack, ...]] = field(default_factory=dict)
    """the edge tracks of recently sent frames, by capture time, until the cloud answers for them"""
    doubted: dict[int, float] = field(default_factory=dict)
    """tracks the cloud's answer did not confirm, with that frame's time: uncovered again once, never twice"""
    reference: KeptFrame | None = None
    """the last sent frame, small and grey (what the change is measured against)"""
    cloud_boxes: tuple[Box, ...] = ()
    """where the cloud found watch-label objects in the last sent frame (normalised)"""
    unclaimed: list[Box] = field(default_factory=list)
    """those of cloud_boxes no edge track of that frame accounts for: objects the cloud found that the edge
    did not track then; an edge track starting there later is that object (adopted, not sent again)"""
    pruned_ts: float = float("-inf")


@dataclass
class TrackSeen:
    first_ts: float
    last_ts: float
    frames: int = 1


@dataclass
class Candidate:
    facts: FrameFacts
    reason: str
    value: float
    kept: KeptFrame | None


# Candidates compete for the budget by reason first, then by how strong the reason is.
COVER_REASONS = ("new_object", "recheck", "unsure")
"""reasons a frame is held for inside the rate window, to send the best cover when it opens"""
TRACK_MEMORY_ENTRIES = 4096
"""tracks remembered per camera at most (seen and covered)"""
SHOWN_FRAMES = 32
"""sent frames per camera whose tracks are kept for the cloud's answer (an answer that never comes is dropped)"""
REASON_RANK = {"new_object": 5.0, "appeared": 4.0, "recheck": 3.5, "left": 3.0, "unsure": 2.0, "changed": 1.0,
               "heartbeat": 0.0}


class AdaptivePolicy:
    """Send what changes what we know; see the module docstring for the rules."""

    name = "adaptive"
    needs_pixels = True
    needs_edge = True

    def __init__(self, settings: AdaptiveSettings | None = None, masks: Mapping[str, Sequence] | None = None) -> None:
        """``masks``: per camera, the site file's masks (normalised polygons) its change measure ignores."""
        self.settings = settings or AdaptiveSettings()
        self.masks = dict(masks or {})
        self.cameras: dict[str, CameraState] = {}
        budget = self.settings.budget_images_per_hour
        self.bucket = TokenBucket(budget / 3600.0, self.settings.budget_burst) if budget > 0 else None
        self.held: Candidate | None = None
        self.objects_sent = 0
        """edge tracks a sent frame covered for the first time (objects the cloud has seen), adopted ones included"""
        self.objects_adopted = 0
        """edge tracks that began where the cloud's answer had already found an object no track accounted for"""
        self._busy_exponent_cap = self._exponent_reaching_heartbeat()

    def _exponent_reaching_heartbeat(self) -> int:
        """Smallest busy-send count whose backoff already waits the whole heartbeat interval."""
        s = self.settings
        if s.busy_backoff <= 1.0:
            return 1
        ratio = s.max_interval_s * s.max_fps  # max_interval_s / (1 / max_fps)
        return max(1, math.ceil(math.log(max(ratio, 1.0)) / math.log(s.busy_backoff)))

    def describe(self) -> str:
        s = self.settings
        budget = f", site budget {s.budget_images_per_hour:g} images/h" if self.bucket else ""
        labels = ", ".join(sorted(s.watch_labels))
        objects = (f"each new edge track of {labels} once well visible, or appeared/left by count where the edge "
                   f"does not track" if s.track_driven else f"appeared/left of {labels}")
        return (f"adaptive ({objects}; change, unsure {s.unsure_band[0]:g}-{s.unsure_band[1]:g}; at most "
                f"{s.max_fps:g} fps, heartbeat {s.max_interval_s:g} s{budget})")

    def camera(self, camera_id: str) -> CameraState:
        state = self.cameras.get(camera_id)
        if state is None:
            state = self.cameras[camera_id] = CameraState(SceneChangeDetector(self.settings.change,
                                                                              self.masks.get(camera_id, ())))
        return state

    def offer(self, facts: FrameFacts, pixels: np.ndarray | None) -> list[Verdict]:
        state = self.camera(facts.camera_id)
        change = state.detector.features(pixels) if pixels is not None else None
        self._track_busy_spell(state, facts.ts, change)
        self._note_tracks(state, facts)
        reason, value = self._reason(state, facts, change)
        verdicts = self.poll(facts.ts, skip_camera=facts.camera_id)
        window_open = state.last_sent_ts is None or facts.ts - state.last_sent_ts >= self._min_interval(state, reason)
        if reason is None:
            if state.rate_held is not None and window_open:
                verdicts += self._release_rate_held(state)
            return verdicts + [Verdict(facts.token, "skip", "unchanged", facts.camera_id, facts.ts)]
        kept = state.detector.keep() if change is not None else None
        candidate = Candidate(facts, reason, value, kept)
        if not window_open:
            if reason in COVER_REASONS and state.tracking:
                return verdicts + self._hold_for_rate(state, candidate)
            return verdicts + [Verdict(facts.token, "skip", "rate", facts.camera_id, facts.ts)]
        if state.rate_held is not None:  # the window opens: the better cover of the held frame and this one goes
            held = self._take_rate_held(state)
            if not self._still_uncovered(state, held):
                return verdicts + [Verdict(held.facts.token, "skip", "unchanged", held.facts.camera_id, held.facts.ts),
                                   *self._dispatch(candidate)]
            loser, candidate = (candidate, held) if held.value > candidate.value else (held, candidate)
            verdicts.append(Verdict(loser.facts.token, "skip", "rate", loser.facts.camera_id, loser.facts.ts))
        return verdicts + self._dispatch(candidate)

    def poll(self, now: float, skip_camera: str | None = None) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for camera_id, state in self.cameras.items():
            if camera_id != skip_camera and state.rate_held is not None and state.last_sent_ts is not None \
                    and now - state.last_sent_ts >= self._min_interval(state, state.rate_held.reason):
                verdicts += self._release_rate_held(state)
        if self.held is None or self.bucket is None or not self.bucket.take(now):
            return verdicts
        held, self.held = self.held, None
        return verdicts + [self._send(held)]

    def tracking_cameras(self) -> list[str]:
        """Cameras whose edge boxes carry track ids (the track-driven rules apply to them)."""
        return sorted(camera_id for camera_id, state in self.cameras.items() if state.tracking)

    def learn(self, camera_id: str, capture_ts: float, watch_count: int, boxes: Sequence[Box] | None = None) -> None:
        state = self.camera(camera_id)
        shown = next((state.shown.pop(ts) for ts in list(state.shown) if same_time(ts, capture_ts)), ())
        pairs = match_tracks(shown, boxes or ())
        if state.last_sent_ts is not None and capture_ts >= state.last_sent_ts:
            state.cloud_count = watch_count
            state.cloud_boxes = tuple(boxes or ())
            claimed = {index for _, index in pairs}
            state.unclaimed = [box for index, box in enumerate(boxes or ()) if index not in claimed]
        if self.settings.recheck_unconfirmed:
            self._doubt_unconfirmed(state, capture_ts, watch_count, boxes, shown, {track_id for track_id, _ in pairs})
        if watch_count > 0 and capture_ts >= state.spell_start_ts:
            # Past the exponent at which the wait reaches the heartbeat, more answers change nothing:
            # the count stops there, so an endless busy spell (or a burst of redriven answers) cannot overflow.
            state.busy_sends = min(state.busy_sends + 1, self._busy_exponent_cap)

    # -- internals ---------------------------------------------------------------------------
    def _doubt_unconfirmed(self, state: CameraState, capture_ts: float, watch_count: int, boxes: Sequence[Box] | None,
                           shown: Sequence[EdgeTrack], confirmed: set[int]) -> None:
        """Tracks of a sent frame that the cloud's answer does not confirm are uncovered again (once per
        track; not if a later frame showed them): the frame showed the object too small, too faint or too
        early for the cloud, or the edge's tracker carried a covered id onto another object. With the cloud's
        boxes, the tracks no cloud box overlaps; with its count only, as many as are missing, of those the
        edge doubted too (not well visible), worst seen first."""
        candidates = [t for t in shown if t.track_id not in state.doubted
                      and same_time(state.covered.get(t.track_id), capture_ts)]
        if boxes is not None:
            unconfirmed = [t for t in candidates if t.track_id not in confirmed]
        else:
            missing = len(shown) - watch_count
            unconfirmed = sorted((t for t in candidates if not t.well_visible), key=lambda t: t.quality)[:max(0, missing)]
        for track in unconfirmed:
            del state.covered[track.track_id]
            state.doubted[track.track_id] = capture_ts

    def _track_busy_spell(self, state: CameraState, ts: float, change: ChangeFeatures | None) -> None:
        """A busy spell ends when the scene held still, or matched the last sent frame, for settle_s."""
        if change is None:
            return
        s = self.settings
        if state.detector.moved(s.still_motion) or state.last_motion_ts is None:
            state.last_motion_ts = ts
        if s.change.changed(change):
            state.last_change_ts = ts
        unchanged_since = max(t for t in (state.last_change_ts, state.last_sent_ts, float("-inf")) if t is not None)
        if ts - state.last_motion_ts >= s.settle_s or ts - unchanged_since >= s.settle_s:
            state.busy_sends = 0
            state.spell_start_ts = ts

    def _min_interval(self, state: CameraState, reason: str | None) -> float:
        """Least time since the camera's last sent frame before this candidate may go."""
        s = self.settings
        base = 1.0 / s.max_fps
        if reason != "changed" or state.busy_sends == 0:
            return base
        exponent = min(state.busy_sends, self._busy_exponent_cap)
        return max(base, min(base * s.busy_backoff ** exponent, s.max_interval_s))

    def _note_tracks(self, state: CameraState, facts: FrameFacts) -> None:
        """Which edge tracks this camera holds, since when; whether its edge tracks at all."""
        edge = facts.edge
        if edge is None or not self.settings.track_driven:
            return
        if edge.tracks is None:
            state.tracking = False
            return
        if edge.tracks:
            state.tracking = True
        for track in edge.tracks:
            seen = state.tracks_seen.get(track.track_id)
            if seen is None:
                state.tracks_seen[track.track_id] = TrackSeen(facts.ts, facts.ts)
            else:
                seen.last_ts, seen.frames = facts.ts, seen.frames + 1
        if len(state.tracks_seen) > TRACK_MEMORY_ENTRIES or len(state.covered) > TRACK_MEMORY_ENTRIES \
                or len(state.doubted) > TRACK_MEMORY_ENTRIES \
                or facts.ts - state.pruned_ts >= self.settings.track_memory_s:
            self._forget_old_tracks(state, facts.ts)

    def _forget_old_tracks(self, state: CameraState, now: float) -> None:
        horizon = now - self.settings.track_memory_s
        state.tracks_seen = {tid: seen for tid, seen in state.tracks_seen.items() if seen.last_ts >= horizon}
        newest = sorted(state.tracks_seen, key=lambda tid: state.tracks_seen[tid].last_ts)[-TRACK_MEMORY_ENTRIES:]
        state.tracks_seen = {tid: state.tracks_seen[tid] for tid in newest}
        state.covered = {tid: ts for tid, ts in state.covered.items() if tid in state.tracks_seen}
        state.doubted = {tid: ts for tid, ts in state.doubted.items() if tid in state.tracks_seen}
        state.pruned_ts = now

    def _track_reason(self, state: CameraState, facts: FrameFacts, edge: EdgeSummary, tracks: tuple[EdgeTrack, ...],
                      change: ChangeFeatures | None) -> tuple[str | None, float]:
        """The track-driven rules: uncovered tracks first, change only for a blind edge, heartbeat."""
        s = self.settings
        if state.unclaimed:
            self._adopt(state, tracks)
        uncovered = [t for t in tracks if t.track_id not in state.covered]
        ready = [t for t in uncovered if self._ready(state, t, facts.ts)]
        if ready:
            value = sum(t.quality for t in uncovered)
            if all(t.track_id in state.doubted for t in ready):
                return "recheck", REASON_RANK["recheck"] + min(value, 9.9) / 20
            if all(t.unsure for t in ready if t.track_id not in state.doubted):
                return "unsure", REASON_RANK["unsure"] + min(value, 9.9) / 10
            return "new_object", REASON_RANK["new_object"] + min(value, 9.9) / 10
        if not tracks and change is not None and s.change.changed(change) \
                and self._changed_beyond_known(state):  # the edge sees nothing it tracks
            return "changed", REASON_RANK["changed"] + min(s.change.strength(change), 99.0) / 100
        if state.last_sent_ts is None or facts.ts - state.last_sent_ts >= s.max_interval_s:
            return "heartbeat", REASON_RANK["heartbeat"]
        return None, 0.0

    def _adopt(self, state: CameraState, tracks: Sequence[EdgeTrack]) -> None:
        """New edge tracks where the cloud's last answer found an object no track of that frame accounted for
        are that object: covered by the answer, one track per box (the edge confirmed its track after the frame
        went, or began to see someone the cloud had already found: seated, half hidden)."""
        fresh = [t for t in tracks if t.track_id not in state.covered and t.track_id not in state.doubted]
        for track_id, index in sorted(match_tracks(fresh, state.unclaimed, ADOPT_IOU), key=lambda p: -p[1]):
            state.covered[track_id] = state.last_sent_ts if state.last_sent_ts is not None else 0.0
            del state.unclaimed[index]
            self.objects_sent += 1
            self.objects_adopted += 1

    def _changed_beyond_known(self, state: CameraState) -> bool:
        """The change since the last sent frame, leaving out where the cloud found watch-label objects in it
        (grown by KNOWN_MARGIN), still counts: an edge blind to people the cloud has seen (seated, half hidden)
        would otherwise send them again each time they move."""
        if not state.cloud_boxes or state.reference is None:
            return True
        current = state.detector.keep()
        if current.source_shape != state.reference.source_shape:
            return True
        return self.settings.change.changed(change_outside(current, state.reference, state.cloud_boxes,
                                                           self.settings.change.pixel_delta))

    def _ready(self, state: CameraState, track: EdgeTrack, now: float) -> bool:
        """An uncovered track worth a frame: confirmed, and well visible or past the patience; one the cloud
        did not confirm (doubted) only once well visible, so that the second look is a better one."""
        seen = state.tracks_seen[track.track_id]
        if seen.frames < self.settings.count_confirm_frames:
            return False
        if track.track_id in state.doubted:
            return track.well_visible
        return track.well_visible or now - seen.first_ts >= self.settings.track_patience_s

    def _reason(self, state: CameraState, facts: FrameFacts, change: ChangeFeatures | None) -> tuple[str | None, float]:
        s = self.settings
        edge = facts.edge
        if state.tracking and edge is not None and edge.tracks is not None:
            return self._track_reason(state, facts, edge, edge.tracks, change)
        # What we know: the edge's count at the last sent frame, and the cloud's answer for it (more
        # objects than the edge sees is usual: the cloud-tier model finds what the edge misses).
        known = max(state.last_sent_count or 0, state.cloud_count or 0)
        if edge is not None:  # a frame without an edge result neither confirms nor breaks a streak
            differs = state.last_sent_count is not None and (edge.watch_count > known or edge.watch_count < state.last_sent_count)
            state.count_streak = state.count_streak + 1 if differs else 0
        if edge is not None and state.last_sent_count is not None and s.count_changes \
                and state.count_streak >= s.count_confirm_frames:
            appeared = edge.watch_count > known
            return ("appeared" if appeared else "left"), REASON_RANK["appeared" if appeared else "left"] + \
                min(abs(edge.watch_count - state.last_sent_count), 9) / 10
        strength = s.change.strength(change) if change is not None else None
        cloud_has_them = state.cloud_count is not None and edge is not None \
            and edge.watch_count + edge.unsure_count <= state.cloud_count
        if edge is not None and edge.unsure > 0 and not cloud_has_them \
                and (strength is None or strength >= s.unsure_min_change):
            return "unsure", REASON_RANK["unsure"] + min(edge.unsure, 0.99)
        if change is not None and strength is not None and s.change.changed(change) and self._changed_beyond_known(state):
            return "changed", REASON_RANK["changed"] + min(strength, 99.0) / 100
        if state.last_sent_ts is None or facts.ts - state.last_sent_ts >= s.max_interval_s:
            return "heartbeat", REASON_RANK["heartbeat"]
        return None, 0.0

    def _send(self, candidate: Candidate) -> Verdict:
        facts = candidate.facts
        state = self.camera(facts.camera_id)
        state.last_sent_ts = facts.ts
        state.cloud_count, state.cloud_boxes, state.unclaimed = None, (), []
        if facts.edge is not None:
            state.last_sent_count = facts.edge.watch_count
            state.count_streak = 0
            for track in facts.edge.tracks or ():
                self.objects_sent += track.track_id not in state.covered and track.track_id not in state.doubted
                state.covered[track.track_id] = facts.ts
            if facts.edge.tracks:
                state.shown[facts.ts] = facts.edge.tracks
                while len(state.shown) > SHOWN_FRAMES:
                    del state.shown[next(iter(state.shown))]
        if candidate.kept is not None:
            state.detector.set_reference(candidate.kept)
            state.reference = candidate.kept
        return Verdict(facts.token, "send", candidate.reason, facts.camera_id, facts.ts)

    def _dispatch(self, candidate: Candidate) -> list[Verdict]:
        """Send a candidate whose rate window is open, unless the site budget holds it back."""
        if self.bucket is None or (self.held is None and self.bucket.take(candidate.facts.ts)):
            return [self._send(candidate)]
        return self._compete(candidate)

    def _hold_for_rate(self, state: CameraState, candidate: Candidate) -> list[Verdict]:
        """Inside the rate window: keep the frame that covers the most uncovered tracks, best visible (greedy cover)."""
        facts = candidate.facts
        if state.rate_held is None:
            state.rate_held = candidate
            return [Verdict(facts.token, "hold", candidate.reason, facts.camera_id, facts.ts)]
        if candidate.value > state.rate_held.value:
            loser, state.rate_held = state.rate_held, candidate
            return [Verdict(loser.facts.token, "skip", "rate", loser.facts.camera_id, loser.facts.ts),
                    Verdict(facts.token, "hold", candidate.reason, facts.camera_id, facts.ts)]
        return [Verdict(facts.token, "skip", "rate", facts.camera_id, facts.ts)]

    def _release_rate_held(self, state: CameraState) -> list[Verdict]:
        """The rate window opened: the held frame goes, unless the cloud's answer has since covered its tracks."""
        held = self._take_rate_held(state)
        if self._still_uncovered(state, held):
            return self._dispatch(held)
        return [Verdict(held.facts.token, "skip", "unchanged", held.facts.camera_id, held.facts.ts)]

    @staticmethod
    def _still_uncovered(state: CameraState, held: Candidate) -> bool:
        tracks = held.facts.edge.tracks if held.facts.edge is not None else None
        return not tracks or any(track.track_id not in state.covered for track in tracks)

    @staticmethod
    def _take_rate_held(state: CameraState) -> Candidate:
        held = state.rate_held
        assert held is not None
        state.rate_held = None
        return held

    def _compete(self, candidate: Candidate) -> list[Verdict]:
        """The budget binds: keep the more informative of this candidate and the held one."""
        if self.held is None:
            self.held = candidate
            return [Verdict(candidate.facts.token, "hold", candidate.reason, candidate.facts.camera_id, candidate.facts.ts)]
        if candidate.value > self.held.value:
            loser, self.held = self.held, candidate
            return [Verdict(loser.facts.token, "skip", "budget", loser.facts.camera_id, loser.facts.ts),
                    Verdict(candidate.facts.token, "hold", candidate.reason, candidate.facts.camera_id, candidate.facts.ts)]
        return [Verdict(candidate.facts.token, "skip", "budget", candidate.facts.camera_id, candidate.facts.ts)]

    def release(self) -> list[Verdict]:
        """At shutdown: held frames are skipped (budget, rate), so they are acknowledged and counted."""
        verdicts = [Verdict(state.rate_held.facts.token, "skip", "rate", camera_id, state.rate_held.facts.ts)
                    for camera_id, state in self.cameras.items() if state.rate_held is not None]
        for state in self.cameras.values():
            state.rate_held = None
        if self.held is not None:
            held, self.held = self.held, None
            verdicts.append(Verdict(held.facts.token, "skip", "budget", held.facts.camera_id, held.facts.ts))
        return verdicts


KNOWN_MARGIN = 0.25
"""a known object's box grows by this share of its size on each side: it moves a little between frames"""


def change_outside(current: KeptFrame, reference: KeptFrame, boxes: Sequence[Box], pixel_delta: int) -> ChangeFeatures:
    """The change features of ``current`` against ``reference`` with the given (normalised) boxes left out."""
    changed = cv2.threshold(cv2.absdiff(current.grey, reference.grey), pixel_delta - 1, 255, cv2.THRESH_BINARY)[1]
    edges = cv2.bitwise_xor(current.edges, reference.edges)
    height, width = changed.shape[:2]
    for x0, y0, x1, y1 in boxes:
        grow_x, grow_y = (x1 - x0) * KNOWN_MARGIN, (y1 - y0) * KNOWN_MARGIN
        left, top = max(0, int((x0 - grow_x) * width)), max(0, int((y0 - grow_y) * height))
        right, bottom = min(width, math.ceil((x1 + grow_x) * width)), min(height, math.ceil((y1 + grow_y) * height))
        changed[top:bottom, left:right] = 0
        edges[top:bottom, left:right] = 0
    pixels = float(width * height)
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    largest = int(stats[1:count, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return ChangeFeatures(cv2.countNonZero(changed) / pixels, largest / pixels, cv2.countNonZero(edges) / pixels)


CONFIRM_IOU = 0.2
"""a cloud box confirms an edge track it overlaps at least this much (intersection over union)"""
ADOPT_IOU = 0.3
"""a new edge track is the object of an unclaimed cloud box it overlaps at least this much"""


def same_time(a: float | None, b: float) -> bool:
    """Capture times of the same frame (they may have travelled through JSON)."""
    return a is not None and abs(a - b) < 1e-3


def match_tracks(tracks: Sequence[EdgeTrack], boxes: Sequence[Box], min_iou: float = CONFIRM_IOU) -> list[tuple[int, int]]:
    """(track id, box index) pairs of tracks and the cloud's boxes: one to one, best overlap first."""
    ordered = sorted(tracks, key=lambda track: track.track_id)  # equal overlaps: the higher track id first, as before
    return [(ordered[i].track_id, j) for i, j in greedy_iou_pairs([track.box for track in ordered], boxes, min_iou)]



def watch_labels_of(text: str) -> frozenset[str]:
    return frozenset(label.strip() for label in text.split(",") if label.strip())


def adaptive_settings_of(settings: SamplerSettings, usd_per_image: float | None = None) -> AdaptiveSettings:
    """The adaptive policy's settings from the sampler's (a USD budget needs the price per image)."""
    budget = settings.sampler_budget_images_per_hour
    if settings.sampler_budget_usd_per_hour and usd_per_image:
        budget = settings.sampler_budget_usd_per_hour / usd_per_image
    change = SceneChangeSettings(pixel_delta=settings.sampler_change_pixel_delta,
                                 changed_fraction=settings.sampler_change_fraction,
                                 largest_area=settings.sampler_change_area,
                                 edge_difference=settings.sampler_change_edges)
    return AdaptiveSettings(change=change, watch_labels=watch_labels_of(settings.sampler_watch_labels),
                            unsure_band=(settings.sampler_unsure_low, settings.sampler_unsure_high),
                            unsure_min_change=settings.sampler_unsure_min_change,
                            count_changes=settings.sampler_count_changes, max_fps=settings.sampler_max_fps,
                            track_driven=settings.sampler_track_driven, track_min_size=settings.sampler_track_min_size,
                            track_patience_s=settings.sampler_track_patience_s,
                            busy_backoff=settings.sampler_busy_backoff, settle_s=settings.sampler_settle_s,
                            still_motion=settings.sampler_still_motion,
                            max_interval_s=settings.sampler_max_interval_s, budget_images_per_hour=budget,
                            budget_burst=settings.sampler_budget_burst)

