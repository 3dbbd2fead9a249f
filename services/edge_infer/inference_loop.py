"""Reads frame references, runs the detector on the newest frame per camera, publishes detections."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from prometheus_client import CollectorRegistry

from services.edge_infer.detector_pool import DetectorPool
from services.edge_infer.motion_schedule import Candidate, MotionScheduler, Plan
from services.edge_infer.pose_stage import PoseStage
from services.edge_infer.realtime_policy import CameraCounters, is_stale, select_newest
from services.edge_infer.track_carrier import TrackCarrier
from shared.frame_ring import BorrowedFrame, FrameFetcher, FrameGone
from shared.metrics import LatencyHistograms
from shared.progress import Progress
from shared.schemas import Detection, DetectionSet, FrameRef, Health, HealthState
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus, StreamEntry
from shared.zones import CameraScene
from vision.detectors.base import Detections, Detector, InvalidFrameError, StreamDetector

log = logging.getLogger(__name__)

PERSON = "person"
T = TypeVar("T")
SKIP_TALLY_KEY = "tally:edge_infer"  # hash: "<camera>.<reason>" -> frames acknowledged without detections


class InferenceLoop:
    def __init__(
        self,
        bus: StreamBus,
        detector: Detector | DetectorPool,
        streams: list[str],
        group: str,
        consumer: str,
        max_frame_age_ms: float = 1000.0,
        claim_idle_ms: int = 5000,
        metrics: CollectorRegistry | None = None,
        scheduler: MotionScheduler | None = None,
        scenes: dict[str, CameraScene] | None = None,
        pose_stage: PoseStage | None = None,
        results_bus: StreamBus | None = None,
    ) -> None:
        """``bus`` holds the frame streams (the work queue); ``results_bus`` gets detections and health when
        that is another Redis (the site's, the frames being on this server's own). ``scenes``: cameras with
        masks or object filters; their detections are dropped before publishing."""
        self.bus = bus
        self.results_bus = results_bus or bus
        self.pool = detector if isinstance(detector, DetectorPool) else DetectorPool([detector])
        self.detector = self.pool.first
        self.scheduler = scheduler
        self.pose_stage = pose_stage
        self.carrier = TrackCarrier()
        self.scenes = scenes or {}
        self.streams = streams
        self.group = group
        self.consumer = consumer
        self.max_frame_age_ms = max_frame_age_ms
        self.claim_idle_ms = claim_idle_ms
        self.fetcher = FrameFetcher()
        self.counters: dict[str, CameraCounters] = defaultdict(CameraCounters)
        self.provider = self.detector.providers[0] if self.detector.providers else "unknown"
        self.state: HealthState = "starting"
        self.latency = LatencyHistograms(metrics)
        self.progress = Progress(stall_after_s=5.0, fail_after_s=30.0)  # a loop turn takes at most a read block + a batch
        bus.on_retry = self.progress.beat
        self.results_bus.on_retry = self.progress.beat

    def start(self) -> None:
        for stream in self.streams:
            self.bus.ensure_group(stream, self.group)
        self._claim_orphans()
        self.state = "ok"

    def run(self, stop: threading.Event, health_interval_s: float = 2.0) -> None:
        self.start()
        next_health = next_claim = time.monotonic()
        while not stop.is_set():
            entries = self.bus.read_group(self.streams, self.group, self.consumer, count=200, block_ms=200)
            self.process(entries)
            self.progress.beat()
            now = time.monotonic()
            if now >= next_claim:
                self._claim_orphans()
                next_claim = now + self.claim_idle_ms / 1000.0
            if now >= next_health:
                self.publish_health()
                next_health = now + health_interval_s

    def process(self, entries: list[StreamEntry]) -> None:
        selection = select_newest(entries)
        self._ack_skipped(selection.skipped)
        chosen = selection.newest
        if self.scheduler is not None:
            observed = [borrowed for entry in chosen if (borrowed := self._guarded(entry, self._borrow)) is not None]
            plan = self._plan(observed)
            for entry, frame in plan.defer:
                self._guarded(entry, partial(self._carry_forward, frame=frame))
            chosen = [entry for entry, _ in plan.analyse]
        # Frames are (re-)borrowed just before their turn, one request's worth at a time: a frame
        # borrowed for a whole round would wait behind the others and be overwritten in its ring.
        for start in range(0, len(chosen), self.pool.size):
            batch = [borrowed for entry in chosen[start : start + self.pool.size]
                     if (borrowed := self._guarded(entry, self._borrow)) is not None]
            try:
                outcomes = self.pool.map(self._detect, batch)
            except Exception as error:  # noqa: BLE001 (one bad batch must not stop the service)
                for entry, _ in batch:
                    self._left_pending(entry, error)
                continue
            for (entry, frame), outcome in zip(batch, outcomes):
                self._guarded(entry, partial(self._finish, frame=frame, outcome=outcome))

    def _guarded(self, entry: StreamEntry, work: Callable[[StreamEntry], T]) -> T | None:
        """An entry that breaks the analysis stays pending: it is re-delivered by the claim and,
        after the bus's delivery limit, dead-lettered; the loop and the other cameras go on."""
        try:
            return work(entry)
        except Exception as error:  # noqa: BLE001 (one bad entry must not stop the service)
            self._left_pending(entry, error)
            return None

    def _left_pending(self, entry: StreamEntry, error: Exception) -> None:
        camera_id = getattr(entry.message, "camera_id", "?")
        self.counters[camera_id].dropped["failed"] += 1
        log.error("camera %s entry %s failed (%s: %s); left pending for re-delivery",
                  camera_id, entry.entry_id, type(error).__name__, error)

    def _borrow(self, entry: StreamEntry) -> tuple[StreamEntry, BorrowedFrame] | None:
        """The frame's pixels, or None when it is stale or gone (then acknowledged and counted)."""
        ref = entry.message
        if not isinstance(ref, FrameRef):  # select_newest passes frame references only
            return None
        counters = self.counters[ref.camera_id]
        if is_stale(ref, self.max_frame_age_ms):
            counters.skipped_stale += 1
            self.bus.ack(entry.stream, self.group, [entry.entry_id], tally=(SKIP_TALLY_KEY, f"{ref.camera_id}.stale"))
            return None
        try:
            return entry, self.fetcher.borrow(ref)
        except (FrameGone, ValueError, FileNotFoundError) as error:
            self._drop(entry, error)
            return None

    def _plan(self, borrowed: list[tuple[StreamEntry, BorrowedFrame]]) -> Plan[tuple[StreamEntry, BorrowedFrame]]:
        assert self.scheduler is not None
        now = time.monotonic()
        candidates = []
        for entry, frame in borrowed:
            camera_id = entry.message.camera_id  # type: ignore[attr-defined]
            self.scheduler.observe(camera_id, frame.pixels, now)
            self.scheduler.set_tracks(camera_id, self.carrier.has_tracks(camera_id, entry.message.capture_ts))  # type: ignore[attr-defined]
            candidates.append(Candidate(camera_id, (entry, frame)))
        return self.scheduler.plan(candidates, now)

    @staticmethod
    def _detect(detector: Detector, item: tuple[StreamEntry, BorrowedFrame]) -> Detections | Exception:
        try:
            if isinstance(detector, StreamDetector):  # state per camera (movinet-stream)
                return detector.detect_stream(item[0].message.camera_id, item[1].pixels)  # type: ignore[attr-defined]
            return detector.detect(item[1].pixels)
        except (InvalidFrameError, ValueError) as error:
            return error

    def _finish(self, entry: StreamEntry, frame: BorrowedFrame, outcome: Detections | Exception) -> None:
        ref: FrameRef = entry.message  # type: ignore[assignment]
        if not isinstance(outcome, Exception) and not frame.still_valid():
            outcome = FrameGone(f"frame {ref.seq} was overwritten while it was analysed")
        if isinstance(outcome, Exception):
            self._drop(entry, outcome)
            return
        result = self.carrier.observe(self._detection_set(ref, outcome))
        if coasting := self.carrier.coasting(result):
            result = result.model_copy(update={"detections": [*result.detections, *coasting]})
        if self.pose_stage is not None:
            result = self._with_poses(frame, result)
        self._answer(entry, result)
        self.counters[ref.camera_id].record(result.latency_ms, result.inference_ms, result.count(PERSON))
        self.latency.observe(result)

    def _carry_forward(self, entry: StreamEntry, frame: BorrowedFrame) -> None:
        """A frame the schedule skipped: acknowledged with the tracker's boxes, in one transaction."""
        ref: FrameRef = entry.message  # type: ignore[assignment]
        self.counters[ref.camera_id].skipped_schedule += 1
        result = self.carrier.carried_set(ref, self.detector.name, self.provider)
        if self.pose_stage is not None:
            result = self.pose_stage.decorate(result)
        self._answer(entry, result)

    def _answer(self, entry: StreamEntry, result: DetectionSet) -> None:
        """Publish a frame's detections and acknowledge the frame: in one transaction on one Redis; across
        two, publish first (a crash between them re-delivers the frame, by then stale and dropped)."""
        if self.results_bus is self.bus:
            self.bus.publish_and_ack(DETECTIONS_STREAM, result, entry.stream, self.group, [entry.entry_id])
            return
        self.results_bus.publish(DETECTIONS_STREAM, result)
        self.bus.ack(entry.stream, self.group, [entry.entry_id])

    def _with_poses(self, frame: BorrowedFrame, result: DetectionSet) -> DetectionSet:
        """Poses and actions of the tracked people; a pose that fails (bad crop) costs the frame its poses only."""
        assert self.pose_stage is not None
        if not frame.still_valid():  # overwritten in its ring since the detector read it: no pose from other pixels
            self.pose_stage.counters.frame_gone += 1
            return self.pose_stage.decorate(result)
        try:
            posed = self.pose_stage.annotate(frame.pixels, result)
        except (InvalidFrameError, ValueError) as error:
            self.pose_stage.counters.failed += 1
            log.warning("camera %s frame %d: pose stage failed (%s)", result.camera_id, result.seq, error)
            return result
        return posed

    def _drop(self, entry: StreamEntry, error: Exception) -> None:
        ref: FrameRef = entry.message  # type: ignore[assignment]
        reason = type(error).__name__
        self.counters[ref.camera_id].dropped[reason] += 1
        log.warning("camera %s frame %d dropped: %s", ref.camera_id, ref.seq, error)
        self.bus.ack(entry.stream, self.group, [entry.entry_id], tally=(SKIP_TALLY_KEY, f"{ref.camera_id}.{reason}"))

    def _detection_set(self, ref: FrameRef, detections: Detections) -> DetectionSet:
        labels = detections.labels(self.detector.labels)
        items = [
            Detection(label=label, class_id=int(cid), score=float(score), box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            for label, cid, score, box in zip(labels, detections.class_ids, detections.scores, detections.boxes)
        ]
        scene = self.scenes.get(ref.camera_id)
        if scene is not None:
            kept = [d for d in items if scene.keeps(d.label, d.score, d.box, ref.width, ref.height)]
            self.counters[ref.camera_id].masked += len(items) - len(kept)
            items = kept
        now = time.time()
        return DetectionSet(
            camera_id=ref.camera_id,
            seq=ref.seq,
            frame_id=ref.frame_id,
            capture_ts=ref.capture_ts,
            width=ref.width,
            height=ref.height,
            source="edge",
            model=self.detector.name,
            provider=self.provider,
            latency_ms=max(0.0, (now - ref.capture_ts) * 1000.0),
            inference_ms=self.detector.last_timing.total_ms,
            detections=items,
            published_ts=now,
        )

    def _ack_skipped(self, skipped: list[StreamEntry]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        camera_of: dict[str, str] = {}
        for entry in skipped:
            by_stream[entry.stream].append(entry.entry_id)
            if isinstance(entry.message, FrameRef):
                self.counters[entry.message.camera_id].skipped_backlog += 1
                camera_of[entry.stream] = entry.message.camera_id
        for stream, ids in by_stream.items():
            self.bus.ack(stream, self.group, ids, tally=(SKIP_TALLY_KEY, f"{camera_of.get(stream, '?')}.backlog"))

    def _claim_orphans(self) -> None:
        """Entries a dead instance read but never answered: handle them under the same rules."""
        for stream in self.streams:
            claimed = self.bus.claim_stale(stream, self.group, self.consumer, self.claim_idle_ms)
            if claimed:
                log.info("took over %d unacknowledged frame(s) of %s from a stopped instance", len(claimed), stream)
                self.process(claimed)

    def health(self) -> Health:
        totals: dict[str, float] = {"dead_lettered": self.bus.counters["dead_lettered"] + (
            self.results_bus.counters["dead_lettered"] if self.results_bus is not self.bus else 0)}
        for camera_id, counters in self.counters.items():
            for key, value in counters.as_dict().items():
                totals[f"{camera_id}.{key}"] = value
        if self.pose_stage is not None:
            totals.update(self.pose_stage.counters.as_dict())
        totals["progress_age_s"] = round(self.progress.age_s(), 1)
        state, message = self.health_state()
        return Health(service="edge_infer", instance=self.consumer, state=state, counters=totals,
                      message=message or f"{self.detector.name} on {self.provider}")

    def health_state(self) -> tuple[HealthState, str]:
        """From the age of the last loop turn; degraded while Redis refuses or is away."""
        if self.state != "ok":
            return self.state, ""
        refusing = self.bus.refusing or self.results_bus.refusing
        return self.progress.state("degraded" if refusing else "ok", refusing)

    def publish_health(self) -> None:
        self.results_bus.publish(HEALTH_STREAM, self.health(), maxlen=1000)

    def close(self) -> None:
        self.pool.close()
        self.fetcher.close()
