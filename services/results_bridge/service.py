"""The results bridge: SQS results queue -> cloud DetectionSets (and alerts) on the edge streams, each frame once.

Each CloudResult becomes a DetectionSet with source "cloud", written to the detections stream
together with a per-frame-id key (with a TTL) in one Redis transaction, so a result delivered
twice (SQS is at-least-once) is published once. A message is deleted from the queue only after
its stream write succeeded. A malformed body is logged, counted, copied to the dead-letter
stream and deleted. FaceMatches messages (face watch-list hits) go to the face_matches stream the
same way, once per frame (face_matches.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from services.results_bridge.face_matches import dedup_id, in_camera_pixels
from services.results_bridge.settings import BridgeSettings
from shared.progress import Progress
from shared.result_counters import CLOUD_RESULT_COUNTERS_KEY, dedup_key
from shared.schemas import (
    Alert,
    CloudResult,
    Detection,
    DetectionSet,
    Envelope,
    FaceMatches,
    Health,
    HealthState,
    SchemaError,
    alerts_of,
    decode_text,
)
from shared.site_config import ResolvedCamera, SiteConfig
from shared.stream_bus import ALERTS_STREAM, DEADLETTER_STREAM, DETECTIONS_STREAM, FACE_MATCHES_STREAM, HEALTH_STREAM, StreamBus

log = logging.getLogger("results_bridge")


class PollInterrupted(BaseException):  # not an Exception: no library may swallow it
    """A stop request arrived during a long poll; what was received comes back after its visibility timeout."""


def detection_set_of(result: CloudResult, camera: ResolvedCamera | None, now: float) -> DetectionSet:
    """The edge message for a cloud result, with boxes in the camera's own pixels.

    The sampler may have sent a downscaled JPEG; the site file says the camera's real size. Each
    detection keeps the edge track it is about (track_id), if any.
    """
    width, height = (camera.width, camera.height) if camera else (result.width, result.height)
    sx, sy = width / result.width, height / result.height
    detections = [
        Detection(label=d.label, class_id=d.class_id, score=d.score, track_id=d.track_id, box=(
            min(max(d.box[0] * sx, 0.0), width), min(max(d.box[1] * sy, 0.0), height),
            min(max(d.box[2] * sx, 0.0), width), min(max(d.box[3] * sy, 0.0), height)))
        for d in result.detections
    ]
    return DetectionSet(
        camera_id=result.camera_id, seq=result.seq, frame_id=result.frame_id, capture_ts=result.capture_ts,
        width=width, height=height, source="cloud", model=result.model, provider=result.backend,
        latency_ms=max(0.0, (now - result.capture_ts) * 1000.0), detections=detections, published_ts=now,
    )


class ResultsBridge:
    def __init__(self, settings: BridgeSettings, site: SiteConfig | None, bus: StreamBus, sqs: Any) -> None:
        self.settings = settings
        self.cameras = {c.id: c for c in site.resolved()} if site else {}
        self.bus = bus
        self.sqs = sqs
        self.counters: Counter[str] = Counter()
        self.polling = False
        self._last_report = 0.0
        self.outage = ""  # why the queue cannot be reached right now ("" while it answers)
        # a poll finishes within the long poll plus the read timeout; an outage still counts as progress
        self.progress = Progress(stall_after_s=settings.bridge_wait_time_s + 15.0,
                                 fail_after_s=3.0 * (settings.bridge_wait_time_s + 10) + 30.0)
        bus.on_retry = self.progress.beat
        self.max_backoff_s = 30.0

    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                self.poll_once()
                self.cloud_back()
                delay = 1.0
            except PollInterrupted:
                break
            except (BotoCoreError, ClientError, OSError) as error:
                self.progress.beat()  # the loop turns; the outage is reported on its own
                self.cloud_lost(error, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)
            self.report()
        self.report(force=True)

    def cloud_lost(self, error: Exception, retry_in_s: float) -> None:
        """The queue cannot be reached (an internet outage, throttling, expired credentials): report
        degraded and keep trying; what was received but not deleted comes back after its visibility timeout."""
        self.counters["poll_errors"] += 1
        reason = f"{type(error).__name__}: {error}"[:200]
        if not self.outage:
            log.warning("results queue unreachable (%s); retrying with backoff (next in %.0f s)", reason, retry_in_s)
        self.outage = reason

    def cloud_back(self) -> None:
        self.progress.beat()
        if self.outage:
            log.info("results queue reachable again after %d failed polls", self.counters["poll_errors"])
            self.outage = ""

    def poll_once(self) -> int:
        """One long poll; returns the messages received."""
        options: dict[str, Any] = {"QueueUrl": self.settings.bridge_queue_url, "WaitTimeSeconds": self.settings.bridge_wait_time_s,
                                   "MaxNumberOfMessages": self.settings.bridge_max_messages}
        if self.settings.bridge_visibility_timeout_s:
            options["VisibilityTimeout"] = self.settings.bridge_visibility_timeout_s
        self.polling = True
        try:
            messages = self.sqs.receive_message(**options).get("Messages", [])
        finally:
            self.polling = False
        self.counters["received"] += len(messages)
        for message in messages:
            self.deliver(message)
        if messages:
            self.delete(messages)
        return len(messages)

    def deliver(self, message: dict[str, Any]) -> None:
        """Put one message's result on the stream (or the dead-letter stream); raises if Redis cannot take it."""
        body = message.get("Body", "")
        try:
            result = decode_text(body)
            if isinstance(result, FaceMatches):
                self.deliver_face_matches(result)
                return
            if not isinstance(result, CloudResult):
                raise SchemaError(f"expected cloud_result, got {type(result).schema_name}")
        except SchemaError as error:
            self.dead_letter(message, str(error))
            return
        detections = detection_set_of(result, self.cameras.get(result.camera_id), time.time())
        alerts = alerts_of(result)
        if self.publish_once(detections, alerts):
            self.counters["published"] += 1
            self.counters["alerts"] += len(alerts)
        else:
            self.counters["duplicates"] += 1
            log.info("result for frame %s was already published; dropped the duplicate", result.frame_id)

    def deliver_face_matches(self, message: FaceMatches) -> None:
        """Watch-list hits onto the face_matches stream once per frame (key and entry in one MULTI, as for detections)."""
        message = in_camera_pixels(message, self.cameras.get(message.camera_id))
        if self.bus.publish_once(dedup_key(dedup_id(message)), self.settings.bridge_dedup_ttl_s,
                                 [(FACE_MATCHES_STREAM, message)], CLOUD_RESULT_COUNTERS_KEY, {}):
            self.counters["face_matches"] += len(message.matches)
        else:
            self.counters["duplicates"] += 1

    def publish_once(self, detections: DetectionSet, alerts: list[Alert]) -> bool:
        """Detections, alerts and the result counters in one transaction, unless this frame was published already."""
        messages: list[tuple[str, Envelope]] = [(DETECTIONS_STREAM, detections), *((ALERTS_STREAM, a) for a in alerts)]
        return self.bus.publish_once(dedup_key(detections.frame_id), self.settings.bridge_dedup_ttl_s, messages,
                                     CLOUD_RESULT_COUNTERS_KEY, {"results": 1, "alerts": len(alerts)})

    def dead_letter(self, message: dict[str, Any], reason: str) -> None:
        self.counters["malformed"] += 1
        message_id = str(message.get("MessageId", "?"))
        log.warning("malformed result message %s: %s (moved to %s)", message_id, reason, DEADLETTER_STREAM)
        self.bus.dead_letter_external(f"sqs:{self.settings.bridge_queue_url}", message_id, "results_bridge",
                                      str(message.get("Body", "")).encode(), reason)

    def delete(self, messages: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
        reply = self.sqs.delete_message_batch(QueueUrl=self.settings.bridge_queue_url, Entries=entries)
        failed = reply.get("Failed", [])
        self.counters["deleted"] += len(entries) - len(failed)
        if failed:  # they come back after the visibility timeout and are dropped as duplicates then
            self.counters["delete_failures"] += len(failed)
            log.warning("%d messages could not be deleted: %s", len(failed), failed[0].get("Message", failed[0].get("Code")))

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.settings.bridge_health_interval_s:
            return
        self._last_report = now
        self.bus.publish(HEALTH_STREAM, self.health())

    def health(self) -> Health:
        state, message = self.state()
        return Health(service="results_bridge", instance=self.settings.bridge_instance, state=state,
                      message=message, counters=self.snapshot())

    def state(self) -> tuple[HealthState, str]:
        """Degraded while the queue or Redis cannot be reached; failed when no poll finished for far longer
        than a long poll takes (the loop is stuck: the process should be restarted)."""
        if self.outage:
            return self.progress.state("degraded", f"results queue unreachable: {self.outage}")
        if self.bus.refusing:
            return self.progress.state("degraded", self.bus.refusing)
        return self.progress.state()

    def snapshot(self) -> dict[str, float]:
        names = ("received", "published", "alerts", "duplicates", "malformed", "deleted", "delete_failures", "poll_errors", "face_matches")
        values = {name: float(self.counters.get(name, 0)) for name in names}
        values["progress_age_s"] = round(self.progress.age_s(), 1)
        return values


def sqs_client(settings: BridgeSettings) -> Any:
    import boto3
    from botocore.config import Config

    # The read timeout must outlast the long poll.
    config = Config(connect_timeout=5, read_timeout=settings.bridge_wait_time_s + 10,
                    retries={"mode": "standard", "total_max_attempts": 5})
    return boto3.client("sqs", region_name=settings.bridge_region, config=config)
