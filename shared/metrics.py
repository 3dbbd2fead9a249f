"""Prometheus metrics for every service, built from the health reports the services publish anyway.

A service hands :func:`service_registry` a function returning its current :class:`Health`
reports; its /health server then also answers ``GET /metrics``. The dashboard feeds the same
collector with the latest report of every service on the site, so one scrape sees the site.

The counters operators ask for first get stable site-wide names (``NAMED_SERIES``); every
other numeric counter is exported as a gauge ``hybridcam_<service>_<counter>``. Counters a
service keeps per camera are written ``"<camera>.<counter>"`` and become a ``camera`` label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import redis
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.schemas import DetectionSet, Health

HEALTHY_STATES = frozenset({"ok", "degraded"})
SERIES_LABELS = ["service", "instance", "camera"]

# Seconds buckets for capture-to-result and model-only latencies (edge tens of ms, cloud about a second).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Series:
    name: str
    kind: Literal["gauge", "counter"]
    help: str


NAMED_SERIES: dict[tuple[str, str], Series] = {
    ("capture", "fps"): Series("hybridcam_capture_fps", "gauge", "frames captured per second"),
    ("capture", "frames"): Series("hybridcam_captured_frames", "counter", "frames captured"),
    ("capture", "reconnects"): Series("hybridcam_camera_reconnects", "counter", "times a camera source was reopened"),
    ("edge_infer", "detect_fps"): Series("hybridcam_detect_fps", "gauge", "frames analysed per second by the edge detector"),
    ("edge_infer", "analysed"): Series("hybridcam_analysed_frames", "counter", "frames the edge detector analysed"),
    ("edge_infer", "skipped"): Series("hybridcam_skipped_frames", "counter", "frames skipped because a newer frame was waiting"),
    ("edge_infer", "skipped_stale"): Series("hybridcam_stale_frames", "counter", "frames dropped because they were too old"),
    ("sampler", "bytes_sent"): Series("hybridcam_uplink_bytes", "counter", "payload bytes sent to the cloud path"),
    ("sampler", "records_sent"): Series("hybridcam_uplink_records", "counter", "records sent to the cloud path"),
    ("sampler", "frames_sampled"): Series("hybridcam_sampled_frames", "counter", "master frames chosen for the cloud"),
    ("results_bridge", "published"): Series("hybridcam_cloud_results", "counter", "cloud results delivered to the edge"),
    ("results_bridge", "alerts"): Series("hybridcam_alerts_sent", "counter", "alerts the cloud raised (SNS) and the edge received"),
    ("compositor", "fps"): Series("hybridcam_program_fps", "gauge", "program pictures per second"),
    ("compositor", "cuts"): Series("hybridcam_program_cuts", "counter", "cuts made by the auto-director"),
}

HealthSource = Callable[[], Iterable[Health]]


def metric_name(*parts: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", "_".join(parts))


class HealthCollector(Collector):
    """Turns health reports into metric families at scrape time."""

    def __init__(self, source: HealthSource) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        healthy = GaugeMetricFamily("hybridcam_service_healthy", "1 while the service reports ok or degraded",
                                    labels=["service", "instance", "state"])
        for report in self.source():
            healthy.add_metric([report.service, report.instance, report.state], 1.0 if report.state in HEALTHY_STATES else 0.0)
            for key, value in report.counters.items():
                camera, _, counter = key.rpartition(".")
                camera = camera or report.camera_id or ""
                series = NAMED_SERIES.get((report.service, counter)) or Series(
                    metric_name("hybridcam", report.service, counter), "gauge", f"{report.service} counter {counter}")
                family = families.get(series.name)
                if family is None:
                    kind = CounterMetricFamily if series.kind == "counter" else GaugeMetricFamily
                    family = families[series.name] = kind(series.name, series.help, labels=SERIES_LABELS)
                family.add_metric([report.service, report.instance, camera], float(value))
        yield healthy
        yield from families.values()


class StreamCollector(Collector):
    """Length of each stream and the entries its consumer groups have read but not acknowledged."""

    def __init__(self, client: redis.Redis, streams: Callable[[], Iterable[str]]) -> None:
        self.client = client
        self.streams = streams

    def collect(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily("hybridcam_stream_length", "entries held in a Redis stream", labels=["stream"])
        pending = GaugeMetricFamily("hybridcam_stream_pending", "entries read but not yet acknowledged",
                                    labels=["stream", "group"])
        try:
            for stream in self.streams():
                length.add_metric([stream], float(self.client.xlen(stream)))
                for group in self._groups(stream):
                    name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
                    pending.add_metric([stream, name], float(group.get("pending", 0)))
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # a scrape during a Redis restart shows what it got; health says the rest
        yield length
        yield pending

    def _groups(self, stream: str) -> list[dict]:
        try:
            return list(self.client.xinfo_groups(stream))
        except redis.ResponseError:  # no such stream yet
            return []


class LatencyHistograms:
    """Latency histograms of detection sets; edge_infer fills them as it publishes, the dashboard as it reads."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.inference_seconds = Histogram(
            "hybridcam_inference_latency_seconds", "edge model time per frame (pre-processing, run, decoding)",
            ["camera"], buckets=LATENCY_BUCKETS, registry=registry)
        self.detection_seconds = Histogram(
            "hybridcam_detection_latency_seconds", "capture to detections published", ["camera", "source"],
            buckets=LATENCY_BUCKETS, registry=registry)

    def observe(self, detections: DetectionSet) -> None:
        self.detection_seconds.labels(detections.camera_id, detections.source).observe(detections.latency_ms / 1000.0)
        if detections.source == "edge":
            self.inference_seconds.labels(detections.camera_id).observe(detections.inference_ms / 1000.0)


def service_registry(health: HealthSource, *collectors: Collector) -> CollectorRegistry:
    """A registry holding a service's health-derived series plus any collectors of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(health))
    for collector in collectors:
        registry.register(collector)
    return registry
