"""Replay sampling policies over recorded footage and score them against the reference detector.

Events are the intervals in which the reference sees a watch label (gaps under ``merge_gap_s``
merged). A policy catches an event when one of its sent frames falls inside it; its delay is the
time from the event's start to the moment the first such frame was sent (a frame held for the
budget is sent late). Label recall over time is the share of reference-positive (frame, label)
pairs for which the newest frame sent by then, captured at most ``fresh_s`` earlier, also shows
that label.

The adaptive policy learns the cloud's answer for each frame it sent (the watch-label objects
the reference found in it: their number and boxes) ``cloud_latency_s`` after sending it, as the live sampler reads
the cloud's results back from the detections stream. Its edge results carry track ids as the live
edge's do: the cached edge boxes go through the edge's own tracker (``TrackCarrier``), which also
carries them over frames the edge did not analyse.

Objects (``objects.py``) are scored beside events: which distinct reference objects a sent frame
showed, how soon after they appeared, and how many frames were sent per object.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hybridcam.sampling_eval.footage import Footage
from hybridcam.sampling_eval.objects import ReferenceObject, score_objects
from hybridcam.sampling_eval.reference import FrameResults, StoredDetection
from services.edge_infer.track_carrier import TrackCarrier
from services.sampler.policy import AdaptivePolicy, AdaptiveSettings, Box, EdgeSummary, FrameFacts, SamplingPolicy, edge_tracks
from shared.schemas import Detection, DetectionSet

CAMERA = "master"
TrackedDetection = tuple[str, float, Box, int | None]
"""label, score, box normalised to the frame, edge track id"""


@dataclass(frozen=True)
class PolicySpec:
    """One policy setting to replay: a label for the table and the curve it belongs to."""

    label: str
    family: str
    every: int = 0
    """every_nth when > 0"""
    adaptive: AdaptiveSettings | None = None
    same_frames_as: str = ""
    """every_nth with N chosen to send as many frames as the policy with this label"""


@dataclass
class PolicyRun:
    spec: PolicySpec
    sent: list[tuple[int, float]] = field(default_factory=list)
    """(frame index, time the frame was sent in seconds from the start)"""
    reasons: Counter[str] = field(default_factory=Counter)
    answers: list[tuple[float, int]] = field(default_factory=list)
    """cloud answers not yet delivered: (due time, frame index)"""


@dataclass(frozen=True)
class Event:
    first: int
    last: int
    """frame indices, inclusive"""
    labels: frozenset[str]


@dataclass(frozen=True)
class Score:
    label: str
    family: str
    frames: int
    sent: int
    sent_fraction: float
    events: int
    caught: int
    event_recall: float
    delay_median_s: float | None
    delay_p95_s: float | None
    label_recall: float
    usd_per_camera_hour: float
    reasons: dict[str, int]
    objects: int = 0
    objects_seen: int = 0
    object_recall: float = 1.0
    object_delay_median_s: float | None = None
    object_delay_p90_s: float | None = None
    frames_per_object: float = 0.0


def default_specs(fps: float, budgets: Sequence[float] = (0.01, 0.02),
                  watch_labels: frozenset[str] | None = None) -> list[PolicySpec]:
    """every_nth at several N, adaptive at several settings, with and without a site budget."""
    specs = [PolicySpec(f"every_nth N={n}", "every_nth", every=n) for n in (5, 10, 20, 40, 80, 160)]
    base = AdaptiveSettings() if watch_labels is None else AdaptiveSettings(watch_labels=watch_labels)
    specs += [
        PolicySpec("adaptive", "adaptive", adaptive=base),
        PolicySpec("adaptive max 0.5 fps", "adaptive", adaptive=replace(base, max_fps=0.5)),
        PolicySpec("adaptive max 1 fps", "adaptive", adaptive=replace(base, max_fps=1.0)),
        PolicySpec("adaptive change+heartbeat", "adaptive (no edge)",
                   adaptive=replace(base, unsure_band=(0.99, 1.0), count_changes=False, track_driven=False)),
        PolicySpec("adaptive by counts (no tracks)", "adaptive (counts)", adaptive=replace(base, track_driven=False)),
    ]
    specs += [PolicySpec(f"adaptive budget {share:.0%}", "adaptive + budget",
                         adaptive=replace(base, budget_images_per_hour=share * fps * 3600, budget_burst=3.0))
              for share in budgets]
    specs.append(PolicySpec("every_nth, same frames as adaptive", "every_nth (matched)", same_frames_as="adaptive"))
    return specs


def reference_positive(detections: list[StoredDetection], watch_labels: frozenset[str], min_score: float) -> frozenset[str]:
    return frozenset(d[0] for d in detections if d[0] in watch_labels and d[1] >= min_score)


def find_events(positives: Sequence[frozenset[str]], fps: float, merge_gap_s: float = 1.0) -> list[Event]:
    events: list[Event] = []
    first = last = -1
    labels: set[str] = set()
    max_gap = merge_gap_s * fps
    for index, present in enumerate(positives):
        if not present:
            continue
        if first >= 0 and index - last < max_gap:
            last, labels = index, labels | present
            continue
        if first >= 0:
            events.append(Event(first, last, frozenset(labels)))
        first = last = index
        labels = set(present)
    if first >= 0:
        events.append(Event(first, last, frozenset(labels)))
    return events


def replay(footage: Footage, results: FrameResults, specs: Sequence[PolicySpec], watch_labels: frozenset[str],
           progress: Callable[[int, int], None] | None = None, cloud_latency_s: float = 1.0,
           reference_min_score: float = 0.5) -> list[PolicyRun]:
    """Run every policy over the footage; adaptive ones see the frames, the cached edge results and,
    cloud_latency_s after each send, the reference's answer for the frame sent."""
    fps = footage.fps
    total = min(footage.frame_count, len(results.reference))
    runs = {spec.label: PolicyRun(spec) for spec in specs}
    live: list[tuple[PolicyRun, SamplingPolicy]] = []
    for spec in specs:
        if spec.every:
            runs[spec.label].sent = [(i, i / fps) for i in range(0, total, spec.every)]
            runs[spec.label].reasons.update(every_nth=len(runs[spec.label].sent),
                                            not_nth=total - len(runs[spec.label].sent))
        elif spec.adaptive is not None:
            live.append((runs[spec.label], AdaptivePolicy(spec.adaptive)))
    if live:
        tracked = edge_with_tracks(results, footage, total)
        for index, frame in enumerate(footage.frames()):
            if index >= total:
                break
            ts = index / fps
            for run, policy in live:
                settings = run.spec.adaptive
                assert settings is not None
                if settings.track_driven:
                    tracks = edge_tracks(tracked[index], settings.watch_labels, settings.unsure_band,
                                         settings.track_min_size)
                    edge = EdgeSummary.of(((d[0], d[1]) for d in tracked[index]), settings.watch_labels,
                                          settings.unsure_band, tracks)
                else:
                    edge = EdgeSummary.of(((d[0], d[1]) for d in results.edge[index]), settings.watch_labels,
                                          settings.unsure_band)
                _deliver_answers(run, policy, results, settings.watch_labels, reference_min_score, ts, fps)
                verdicts = policy.offer(FrameFacts(index, CAMERA, index, ts, edge), frame)
                record(run, verdicts, ts)
                run.answers += [(ts + cloud_latency_s, int(v.token)) for v in verdicts if v.verb == "send"]
            if progress:
                progress(index + 1, total)
        for run, policy in live:
            if isinstance(policy, AdaptivePolicy):
                record(run, policy.release(), total / fps)
    for spec in specs:
        if spec.same_frames_as and spec.same_frames_as in runs:
            count = max(1, len(runs[spec.same_frames_as].sent))
            every = max(1, round(total / count))
            run = runs[spec.label]
            run.spec = replace(spec, every=every, label=f"every_nth N={every} (as many frames as {spec.same_frames_as})")
            run.sent = [(i, i / fps) for i in range(0, total, every)]
            run.reasons.update(every_nth=len(run.sent), not_nth=total - len(run.sent))
    return list(runs.values())


def edge_with_tracks(results: FrameResults, footage: Footage, total: int) -> list[list[TrackedDetection]]:
    """The cached edge boxes of every frame with the track ids the live edge would give them (its
    TrackCarrier), plus the boxes it carries over frames it did not analyse (coasting, stride)."""
    carrier = TrackCarrier()
    width, height, stride = footage.width, footage.height, max(1, results.stride)
    frames: list[list[TrackedDetection]] = []
    for index in range(total):
        ts = index / footage.fps
        if index % stride == 0:
            found = DetectionSet(camera_id=CAMERA, seq=index, frame_id=str(index), capture_ts=ts, width=width,
                                 height=height, model="edge", provider="replay", latency_ms=0.0,
                                 detections=[Detection(label=d[0], score=min(max(d[1], 0.0), 1.0), box=d[2:6])
                                             for d in results.edge[index]])
            found = carrier.observe(found)
            items = [*found.detections, *carrier.coasting(found)]
        else:
            items = carrier.carried(CAMERA, ts, width, height)
        frames.append([(d.label, d.score, (d.box[0] / width, d.box[1] / height, d.box[2] / width, d.box[3] / height),
                        d.track_id) for d in items])
    return frames


def _deliver_answers(run: PolicyRun, policy: SamplingPolicy, results: FrameResults, watch_labels: frozenset[str],
                     min_score: float, now: float, fps: float) -> None:
    due = [answer for answer in run.answers if answer[0] <= now + 1e-9]
    if not due:
        return
    run.answers = [answer for answer in run.answers if answer[0] > now + 1e-9]
    for _, index in due:
        found = [d for d in results.reference[index] if d[0] in watch_labels and d[1] >= min_score]
        width, height = float(results.footage["width"]), float(results.footage["height"])
        policy.learn(CAMERA, index / fps, len(found), [(d[2] / width, d[3] / height, d[4] / width, d[5] / height)
                                                       for d in found])


def record(run: PolicyRun, verdicts: Iterable, now: float) -> None:
    for verdict in verdicts:
        if verdict.verb == "hold":
            continue
        run.reasons[verdict.reason] += 1
        if verdict.verb == "send":
            run.sent.append((int(verdict.token), now))


def score(run: PolicyRun, events: Sequence[Event], positives: Sequence[frozenset[str]],
          results: FrameResults, fps: float, watch_labels: frozenset[str], min_score: float,
          usd_per_image: float, fresh_s: float = 1.0, objects: Sequence[ReferenceObject] = ()) -> Score:
    total = len(positives)
    sent_indices = sorted(index for index, _ in run.sent)
    sent_at = {index: at for index, at in run.sent}
    delays: list[float] = []
    caught = 0
    for event in events:
        inside = [i for i in sent_indices if event.first <= i <= event.last]
        if inside:
            caught += 1
            delays.append(max(0.0, min(sent_at[i] for i in inside) - event.first / fps))
    label_hits = label_total = 0
    sent_by_time = sorted(run.sent, key=lambda item: item[1])
    newest = -1
    cursor = 0
    for index, present in enumerate(positives):
        now = index / fps
        while cursor < len(sent_by_time) and sent_by_time[cursor][1] <= now + 1e-9:
            newest = max(newest, sent_by_time[cursor][0])
            cursor += 1
        if not present:
            continue
        label_total += len(present)
        if newest >= 0 and now - newest / fps <= fresh_s + 1e-9:
            seen = reference_positive(results.reference[newest], watch_labels, min_score)
            label_hits += len(present & seen)
    fraction = len(sent_indices) / total if total else 0.0
    by_object = score_objects(run.sent, objects, fps)
    return Score(
        label=run.spec.label, family=run.spec.family, frames=total, sent=len(sent_indices), sent_fraction=fraction,
        events=len(events), caught=caught, event_recall=caught / len(events) if events else 1.0,
        delay_median_s=statistics.median(delays) if delays else None,
        delay_p95_s=float(np.percentile(delays, 95)) if delays else None,
        label_recall=label_hits / label_total if label_total else 1.0,
        usd_per_camera_hour=fraction * fps * 3600 * usd_per_image,
        reasons=dict(sorted(run.reasons.items())),
        objects=by_object.objects, objects_seen=by_object.seen, object_recall=by_object.recall,
        object_delay_median_s=by_object.delay_median_s, object_delay_p90_s=by_object.delay_p90_s,
        frames_per_object=by_object.frames_per_object,
    )
