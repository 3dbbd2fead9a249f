"""Bring cloud detections back from the results queue (SQS) onto the edge detection stream.

Long-polls the queue, turns each CloudResult into a DetectionSet with source "cloud" and writes
it to the detections stream together with a per-frame-id key (with a TTL) in one Redis
transaction, so a result delivered twice (SQS is at-least-once) is published once. A message is
deleted from the queue only after its stream write succeeded. A malformed body is logged,
counted, copied to the dead-letter stream and deleted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from services.results_bridge.counters import CLOUD_RESULT_COUNTERS_KEY, dedup_key
from services.results_bridge.face_matches import dedup_id, in_camera_pixels
from services.results_bridge.settings import BridgeSettings
from shared.errors import ConfigError
from shared.health import HealthServer
from shared.logs import configure_logging
from shared.metrics import service_registry
from shared.schemas import (
    Alert,
    CloudResult,
    Detection,
    DetectionSet,
    FaceMatches,
    Health,
    SchemaError,
    alerts_of,
    decode_text,
)
from shared.settings import load_settings
from shared.site_config import ResolvedCamera, SiteConfig, load_site
from shared.stream_bus import (
    ALERTS_STREAM,
    DEADLETTER_STREAM,
    DETECTIONS_STREAM,
    FACE_MATCHES_STREAM,
    HEALTH_STREAM,
    PAYLOAD_FIELD,
    StreamBus,
)

log = logging.getLogger("results_bridge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--queue-url", help="SQS results queue (default: HYBRIDCAM_BRIDGE_QUEUE_URL)")
    parser.add_argument("--wait-time", type=int, help="long-poll seconds, 0-20 (default: HYBRIDCAM_BRIDGE_WAIT_TIME_S, 20)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
    parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


class PollInterrupted(BaseException):  # not an Exception: no library may swallow it
    """A stop request arrived during a long poll; what was received comes back after its visibility timeout."""


def detection_set_of(result: CloudResult, camera: ResolvedCamera | None, now: float) -> DetectionSet:
    """The edge message for a cloud result, with boxes in the camera's own pixels.

    The sampler may have sent a downscaled JPEG; the site file says the camera's real size.
    """
    width, height = (camera.width, camera.height) if camera else (result.width, result.height)
    sx, sy = width / result.width, height / result.height
    detections = [
        Detection(label=d.label, class_id=d.class_id, score=d.score, box=(
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

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except PollInterrupted:
                break
            self.report()
        self.report(force=True)

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
        message = in_camera_pixels(message, self.cameras.get(message.camera_id))
        key, payload = dedup_key(dedup_id(message)), message.encode()

        def publish() -> bool:  # key and entry in one MULTI, as for detections: never one without the other
            with self.bus.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        if pipe.exists(key):
                            return False
                        pipe.multi()
                        pipe.xadd(FACE_MATCHES_STREAM, {PAYLOAD_FIELD: payload}, maxlen=self.bus.maxlen, approximate=True)
                        pipe.set(key, b"1", ex=self.settings.bridge_dedup_ttl_s)
                        pipe.execute()
                        return True
                    except redis.WatchError:
                        continue

        if self.bus.call(publish, "publish face matches"):
            self.counters["face_matches"] += len(message.matches)
        else:
            self.counters["duplicates"] += 1

    def publish_once(self, detections: DetectionSet, alerts: list[Alert]) -> bool:
        """XADD of detections and alerts and the frame id key in one MULTI, unless the key exists (WATCH guards the race)."""
        key, payload = dedup_key(detections.frame_id), detections.encode()

        def transaction() -> bool:
            with self.bus.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        if pipe.exists(key):
                            return False
                        pipe.multi()
                        pipe.xadd(DETECTIONS_STREAM, {PAYLOAD_FIELD: payload}, maxlen=self.bus.maxlen, approximate=True)
                        pipe.set(key, b"1", ex=self.settings.bridge_dedup_ttl_s)
                        pipe.hincrby(CLOUD_RESULT_COUNTERS_KEY, "results", 1)
                        for alert in alerts:
                            pipe.xadd(ALERTS_STREAM, {PAYLOAD_FIELD: alert.encode()}, maxlen=self.bus.maxlen, approximate=True)
                        if alerts:
                            pipe.hincrby(CLOUD_RESULT_COUNTERS_KEY, "alerts", len(alerts))
                        pipe.execute()
                        return True
                    except redis.WatchError:
                        continue  # another bridge wrote this frame meanwhile: look again

        return self.bus.call(transaction, "publish cloud detections")

    def dead_letter(self, message: dict[str, Any], reason: str) -> None:
        self.counters["malformed"] += 1
        message_id = str(message.get("MessageId", "?"))
        log.warning("malformed result message %s: %s (moved to %s)", message_id, reason, DEADLETTER_STREAM)
        fields = {b"stream": f"sqs:{self.settings.bridge_queue_url}", b"entry": message_id, b"group": "results_bridge",
                  b"reason": reason, PAYLOAD_FIELD: str(message.get("Body", "")).encode()}
        self.bus.call(lambda: self.bus.redis.xadd(DEADLETTER_STREAM, fields, maxlen=self.bus.maxlen, approximate=True),
                      "dead-letter")

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
        return Health(service="results_bridge", instance=self.settings.bridge_instance, state="ok", counters=self.snapshot())

    def snapshot(self) -> dict[str, float]:
        names = ("received", "published", "alerts", "face_matches", "duplicates", "malformed", "deleted", "delete_failures")
        return {name: float(self.counters.get(name, 0)) for name in names}


def sqs_client(settings: BridgeSettings) -> Any:
    import boto3
    from botocore.config import Config

    # The read timeout must outlast the long poll.
    config = Config(connect_timeout=5, read_timeout=settings.bridge_wait_time_s + 10,
                    retries={"mode": "standard", "total_max_attempts": 5})
    return boto3.client("sqs", region_name=settings.bridge_region, config=config)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        BridgeSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        bridge_queue_url=args.queue_url,
        bridge_wait_time_s=args.wait_time,
        health_port=args.health_port,
    )
    configure_logging("results_bridge", settings.log_level)
    if not settings.bridge_queue_url:
        raise ConfigError("no results queue: set HYBRIDCAM_BRIDGE_QUEUE_URL (the stack's ResultsQueueUrl output) or pass --queue-url")
    site = load_site(settings.site_file)
    log.info("bringing cloud results from %s (long poll %d s) to stream %s as source=cloud; duplicates dropped for %d s",
             settings.bridge_queue_url, settings.bridge_wait_time_s, DETECTIONS_STREAM, settings.bridge_dedup_ttl_s)
    bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
    bridge = ResultsBridge(settings, site, bus, sqs_client(settings))
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        if bridge.polling:
            raise PollInterrupted()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    health_server = None
    if settings.health_port:
        health_server = HealthServer(settings.health_port, lambda: {
            "service": "results_bridge", "state": "ok", "counters": bridge.snapshot()},
            metrics=service_registry(lambda: [bridge.health()])).start()
    try:
        bridge.run(stop)
    finally:
        if health_server:
            health_server.stop()
        counters = bridge.snapshot()
        log.info("stopped: %d results received, %d published, %d duplicates, %d malformed",
                 counters["received"], counters["published"], counters["duplicates"], counters["malformed"])
        bus.close()
    return 0
