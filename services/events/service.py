"""The events service: edge detections from the bus → tracks → rules → events, clips and notifications.

One consumer group on the detection stream (an entry is acknowledged once its rules ran); one
thread per camera with its own compressed stream feeding the clip buffer. The recorder is used by
both under one lock: a packet and a detection set never interleave inside it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import numpy as np

from services.events.cloud_upload import EventUploader
from services.events.event_recorder import EventRecorder
from services.events.notifications import Notifier
from services.events.packet_feed import DemuxedFeed, FeedError, feed_target, run_feed
from services.events.settings import EventsSettings
from services.events.synthetic_feed import SyntheticEncoder, run_synthetic_feed
from shared.errors import ConfigError
from shared.event_store import EventStore
from shared.frame_ring import FrameGone, FrameRingReader, ring_name, ring_namespace
from shared.progress import Progress
from shared.schemas import CloudConfirmRequest, DetectionSet, FaceMatches, Health, HealthState
from shared.site_config import ResolvedCamera, SiteConfig
from shared.stream_bus import CLOUD_REQUESTS_STREAM, DETECTIONS_STREAM, FACE_MATCHES_STREAM, StreamBus

log = logging.getLogger(__name__)

GROUP = "events"
UPLOAD_INTERVAL_S = 15.0  # finished events go to the cloud within this (a sweep sends at most 20)


class EventsService:
    def __init__(self, settings: EventsSettings, site: SiteConfig, bus: StreamBus) -> None:
        self.settings = settings
        self.site = site
        self.bus = bus
        self.store = EventStore(settings.events_dir)
        self.uploader = EventUploader(self.store, site.site, settings.events_upload_bucket, settings.events_upload_table,
                                      site.events.retention_days, link_expiry_s=settings.events_link_expiry_s) \
            if settings.events_upload_bucket and settings.events_upload_table else None
        if settings.events_link == "presigned" and self.uploader is None:
            raise ConfigError("HYBRIDCAM_EVENTS_LINK=presigned needs HYBRIDCAM_EVENTS_UPLOAD_BUCKET and _UPLOAD_TABLE "
                              "(the stack's FramesBucketName and FramesTableName)")
        link_for = self.uploader.presigned_link if self.uploader is not None and settings.events_link == "presigned" else None
        notifier = Notifier(settings.events_alert_topic_arn, settings.events_link_base, link_for=link_for) \
            if settings.events_alert_topic_arn else None
        cameras = site.resolved()
        self.recorder = EventRecorder(self.store, site.events, {c.id: site.scene(c.id) for c in cameras},
                                      {c.id: c.name for c in cameras}, notifier, ask_cloud=self._ask_cloud, site=site.site)
        self.lock = threading.Lock()
        self.progress = Progress(stall_after_s=30.0, fail_after_s=90.0)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.feeds: dict[str, DemuxedFeed] = {}
        self.rings: dict[str, FrameRingReader] = {}
        self.namespace = ring_namespace(settings.redis_url)
        self.processed = 0
        self.cloud_results = 0
        self._next_retention = 0.0
        self._next_upload = 0.0

    def start(self, stop: threading.Event) -> list[str]:
        """Reconcile the store after any crash, open the clip streams; lines saying what was found."""
        lines = []
        counts = self.store.reconcile(time.time())
        if any(counts.values()):
            lines.append("store reconciled after an unclean stop: {closed} events closed, {missing_files} missing files "
                         "forgotten, {orphan_files} stray files removed".format(**counts))
        if not self.settings.events_clips:
            return [*lines, "clips off (HYBRIDCAM_EVENTS_CLIPS=false)"]
        for camera in self.site.resolved():
            target = feed_target(camera.source)
            if target is None:
                lines.append(self._start_encoder(camera, stop))
                continue
            feed = DemuxedFeed(target[0], loop=target[1], paced=True)
            try:
                self.recorder.set_template(camera.id, feed.open())
            except FeedError as error:
                lines.append(f"{camera.id}: no clips: {error}")
                continue
            self.feeds[camera.id] = feed
            threading.Thread(target=run_feed, args=(feed, self._packet_sink(camera.id), stop, self._template_sink(camera.id)),
                             daemon=True, name=f"clips-{camera.id}").start()
            lines.append(f"{camera.id}: clips remuxed from {feed.stream.codec_context.name} packets of {target[0]}")
        return lines

    def _start_encoder(self, camera: ResolvedCamera, stop: threading.Event) -> str:
        """A camera without its own stream: encode its frames once into the rolling buffer (when it has rules)."""
        if not camera.source.strip().lower().startswith("synthetic") or not self.settings.events_encode_synthetic:
            return f"{camera.id}: no clips (a {camera.source.split(':')[0]} source has no compressed stream of its own)"
        if not self.recorder.cameras[camera.id].rules.states:
            return f"{camera.id}: no clips needed (no rule watches it)"
        encoder = SyntheticEncoder(camera.id, camera.width, camera.height, camera.fps, self.settings.events_encode_width)
        self.recorder.set_template(camera.id, encoder.spec)
        threading.Thread(target=run_synthetic_feed, args=(self.bus, encoder, self._packet_sink(camera.id), stop),
                         daemon=True, name=f"clips-{camera.id}").start()
        return f"{camera.id}: clips encoded once from its frames (H.264 {encoder.size[0]}x{encoder.size[1]})"

    def _template_sink(self, camera_id: str):
        def reopened(stream) -> None:
            with self.lock:
                self.recorder.set_template(camera_id, stream)
        return reopened

    def _packet_sink(self, camera_id: str):
        def deliver(item) -> None:
            with self.lock:
                self.recorder.on_packet(camera_id, item)
        return deliver

    def run(self, stop: threading.Event) -> None:
        self.bus.ensure_group(DETECTIONS_STREAM, GROUP)
        self.bus.ensure_group(FACE_MATCHES_STREAM, GROUP)
        self.bus.on_retry = self.progress.beat
        next_health = 0.0
        while not stop.is_set():
            entries = self.bus.read_group([DETECTIONS_STREAM, FACE_MATCHES_STREAM], GROUP, self.consumer, count=100, block_ms=500)
            for entry in entries:
                if isinstance(entry.message, DetectionSet):
                    self.handle(entry.message)
                elif isinstance(entry.message, FaceMatches):
                    with self.lock:
                        self.recorder.on_face_matches(entry.message)
            for stream in {e.stream for e in entries}:
                self.bus.ack(stream, GROUP, [e.entry_id for e in entries if e.stream == stream])
            self.progress.beat()
            now = time.time()
            with self.lock:
                self.recorder.expire_confirmations(now)
                self.recorder.finish_overdue(now)
            if now >= self._next_retention:
                self._enforce_retention(now)
            if self.uploader is not None and now >= self._next_upload:
                self._upload(now)
                self._next_upload = now + UPLOAD_INTERVAL_S
            if now >= next_health:
                self.bus.publish("health", self.health(), maxlen=1000)
                next_health = now + self.settings.events_health_interval_s
        with self.lock:
            self.recorder.flush(time.time())

    def _ask_cloud(self, request: CloudConfirmRequest) -> None:
        self.bus.publish(CLOUD_REQUESTS_STREAM, request, maxlen=1000)

    def handle(self, result: DetectionSet) -> None:
        if result.source != "edge":
            with self.lock:
                self.recorder.on_detections(result)  # the cloud's answer: confirmations, cloud labels
            self.cloud_results += 1
            return
        with self.lock:
            self.recorder.on_detections(result, lambda: self._frame(result))
        self.processed += 1

    def _frame(self, result: DetectionSet) -> np.ndarray | None:
        """The detection's frame from the camera's ring while it is still there (for the event's snapshot)."""
        if not self.recorder.cameras.get(result.camera_id) or not self._may_need_frame(result.camera_id):
            return None
        try:
            ring = self.rings.get(result.camera_id)
            if ring is None or ring.stale():
                ring = self.rings[result.camera_id] = FrameRingReader(ring_name(result.camera_id, self.namespace))
            for slot in range(ring.layout.slots):
                if ring.slot_seq(slot) == result.seq:
                    return ring.read(slot, result.seq)
        except (FileNotFoundError, FrameGone, ValueError, OSError):
            return None
        return None

    def _may_need_frame(self, camera_id: str) -> bool:
        """Pixels only when the camera has rules: an open event may want a better snapshot, or one may open."""
        return bool(self.recorder.cameras[camera_id].rules.states)

    def _enforce_retention(self, now: float) -> None:
        config = self.site.events
        with self.lock:
            report = self.store.enforce_retention(now, config.retention_days, config.disk_budget_mb * 1024 * 1024)
        if report.events_removed or report.clips_removed:
            log.info("retention: %d events and %d clips removed (%d bytes)", report.events_removed, report.clips_removed,
                     report.bytes_freed)
        self._next_retention = now + self.settings.events_retention_interval_s

    def _upload(self, now: float) -> None:
        if self.uploader is None:
            return
        settled = now - self.site.events.post_roll_s - 10.0  # the clip of an event closed earlier is finished
        with self.lock:
            self.uploader.sweep(settled)

    def counters(self) -> dict[str, Any]:
        counters = self.recorder.counters
        drops = [c.tracks.drops for c in self.recorder.cameras.values()]
        return {"detection_sets": self.processed, "events_opened": counters.opened, "events_closed": counters.closed,
                "clips": counters.clips, "clip_failures": counters.clip_failures, "snapshots": counters.snapshots,
                "notified": counters.notified, "notifications_suppressed": counters.notifications_suppressed,
                "notification_failures": counters.notification_failures, "cloud_results": self.cloud_results,
                "confirm_requests": counters.confirm_requests, "confirmed": counters.confirmed, "refused": counters.refused,
                "confirm_timeouts": counters.confirm_timeouts,
                "masked": sum(d.masked for d in drops), "filtered": sum(d.filtered for d in drops),
                "disk_bytes": self.store.used_bytes(),
                "uploaded": self.uploader.counters.events if self.uploader else 0,
                "upload_failures": self.uploader.counters.failures if self.uploader else 0}

    def state(self) -> tuple[HealthState, str]:
        return self.progress.state()

    def health(self) -> Health:
        state, message = self.state()
        return Health(service="events", instance=self.consumer, state=state, message=message,
                      counters={k: float(v) for k, v in self.counters().items()})

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()
        for ring in self.rings.values():
            ring.close()
        self.store.close()
