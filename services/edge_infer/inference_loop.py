"""Reads frame references, runs the detector on the newest frame per camera, publishes detections."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from prometheus_client import CollectorRegistry

from services.edge_infer.realtime_policy import CameraCounters, is_stale, select_newest
from shared.frame_ring import FrameFetcher, FrameGone
from shared.metrics import LatencyHistograms
from shared.progress import Progress
from shared.schemas import Detection, DetectionSet, FrameRef, Health, HealthState
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus, StreamEntry
from vision.detectors.base import Detections, Detector, InvalidFrameError

log = logging.getLogger(__name__)

PERSON = "person"
SKIP_TALLY_KEY = "tally:edge_infer"  # hash: "<camera>.<reason>" -> frames acknowledged without detections


class InferenceLoop:
    def __init__(
        self,
        bus: StreamBus,
        detector: Detector,
        streams: list[str],
        group: str,
        consumer: str,
        max_frame_age_ms: float = 1000.0,
        claim_idle_ms: int = 5000,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.bus = bus
        self.detector = detector
        self.streams = streams
        self.group = group
        self.consumer = consumer
        self.max_frame_age_ms = max_frame_age_ms
        self.claim_idle_ms = claim_idle_ms
        self.fetcher = FrameFetcher()
        self.counters: dict[str, CameraCounters] = defaultdict(CameraCounters)
        self.provider = detector.providers[0] if detector.providers else "unknown"
        self.state: HealthState = "starting"
        self.latency = LatencyHistograms(metrics)
        self.progress = Progress(stall_after_s=5.0, fail_after_s=30.0)  # a loop turn takes at most a read block + a batch
        bus.on_retry = self.progress.beat

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
        for entry in selection.newest:
            self._analyse_guarded(entry)

    def _analyse_guarded(self, entry: StreamEntry) -> None:
        """An entry that breaks the analysis stays pending: it is re-delivered by the claim and,
        after the bus's delivery limit, dead-lettered; the loop and the other cameras go on."""
        try:
            self._analyse(entry)
        except Exception as error:  # noqa: BLE001 (one bad entry must not stop the service)
            camera_id = getattr(entry.message, "camera_id", "?")
            self.counters[camera_id].dropped["failed"] += 1
            log.error("camera %s entry %s failed (%s: %s); left pending for re-delivery",
                      camera_id, entry.entry_id, type(error).__name__, error)

    def _analyse(self, entry: StreamEntry) -> None:
        ref = entry.message
        if not isinstance(ref, FrameRef):  # select_newest passes frame references only
            return
        counters = self.counters[ref.camera_id]
        if is_stale(ref, self.max_frame_age_ms):
            counters.skipped_stale += 1
            self.bus.ack(entry.stream, self.group, [entry.entry_id], tally=(SKIP_TALLY_KEY, f"{ref.camera_id}.stale"))
            return
        try:
            frame = self.fetcher.borrow(ref)
            detections = self.detector.detect(frame.pixels)
            if not frame.still_valid():
                raise FrameGone(f"frame {ref.seq} was overwritten while it was analysed")
        except (FrameGone, InvalidFrameError, ValueError, FileNotFoundError) as error:
            reason = type(error).__name__
            counters.dropped[reason] += 1
            log.warning("camera %s frame %d dropped: %s", ref.camera_id, ref.seq, error)
            self.bus.ack(entry.stream, self.group, [entry.entry_id], tally=(SKIP_TALLY_KEY, f"{ref.camera_id}.{reason}"))
            return
        result = self._detection_set(ref, detections)
        self.bus.publish_and_ack(DETECTIONS_STREAM, result, entry.stream, self.group, [entry.entry_id])
        counters.record(result.latency_ms, result.inference_ms, result.count(PERSON))
        self.latency.observe(result)

    def _detection_set(self, ref: FrameRef, detections: Detections) -> DetectionSet:
        labels = detections.labels(self.detector.labels)
        items = [
            Detection(label=label, class_id=int(cid), score=float(score), box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            for label, cid, score, box in zip(labels, detections.class_ids, detections.scores, detections.boxes)
        ]
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
        totals: dict[str, float] = {"dead_lettered": self.bus.counters["dead_lettered"]}
        for camera_id, counters in self.counters.items():
            for key, value in counters.as_dict().items():
                totals[f"{camera_id}.{key}"] = value
        totals["progress_age_s"] = round(self.progress.age_s(), 1)
        state, message = self.health_state()
        return Health(service="edge_infer", instance=self.consumer, state=state, counters=totals,
                      message=message or f"{self.detector.name} on {self.provider}")

    def health_state(self) -> tuple[HealthState, str]:
        """From the age of the last loop turn; degraded while Redis refuses or is away."""
        if self.state != "ok":
            return self.state, ""
        return self.progress.state("degraded" if self.bus.refusing else "ok", self.bus.refusing)

    def publish_health(self) -> None:
        self.bus.publish(HEALTH_STREAM, self.health(), maxlen=1000)

    def close(self) -> None:
        self.fetcher.close()
