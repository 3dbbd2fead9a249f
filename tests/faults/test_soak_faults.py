"""Fault scenario 11: a soak with periodic restarts of every edge service (5 minutes; `make faults FULL=1`
or HYBRIDCAM_FAULTS_SOAK_HOURS=N for hours). Nothing may grow: process memory after warm-up, Redis
memory, recordings, consumers in the groups."""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from pathlib import Path

import boto3
import pytest
import redis

from shared.stream_bus import StreamBus, frames_stream
from tests.faults.edge_stack import exits, rss_mb, synthetic_cameras, write_fault_site
from tests.faults.report import FaultResult, full_run, record_fault
from tests.fixtures.pipeline import ServiceRunner

SERVICES = {  # name -> hybridcam command
    "capture": ("capture",),
    "edge_infer": ("edge-infer",),
    "compositor": ("compositor",),
    "sampler": ("sampler",),
    "results_bridge": ("results-bridge",),
}
RESTART_ORDER = ["edge_infer", "sampler", "compositor", "capture", "results_bridge"]
SEGMENT_S, RETENTION_GB = 5.0, 0.001


def soak_seconds() -> float:
    hours = os.environ.get("HYBRIDCAM_FAULTS_SOAK_HOURS")
    if hours:
        return float(hours) * 3600
    return 3600.0 if full_run() else 300.0


def _growth(samples: list[tuple[float, float]], started: float, warm_up_s: float) -> tuple[float, float, float] | None:
    """(RSS after warm-up, RSS at the end, relative growth) of one process's samples (time, MB)."""
    warm = [mb for t, mb in samples if t >= started + warm_up_s]
    if len(warm) < 6:
        return None
    first, last = statistics.median(warm[:3]), statistics.median(warm[-3:])
    return first, last, (last - first) / first


@pytest.mark.faults_slow
def test_11_soak_with_periodic_restarts(redis_server, aws_env: dict[str, str], tmp_path: Path) -> None:
    total_s = soak_seconds()
    warm_up_s = 45.0
    stream = f"soak-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    queue_url = boto3.client("sqs").create_queue(QueueName=f"soak-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    cameras = synthetic_cameras(3)
    recordings = tmp_path / "program" / "recordings"
    env = {**os.environ, **aws_env, "HYBRIDCAM_REDIS_URL": redis_server.url, "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_SITE_FILE": str(write_fault_site(tmp_path / "site.yaml", cameras, fps=4, width=320, height=180, every=8)),
           "HYBRIDCAM_EDGE_THREADS": "1", "HYBRIDCAM_STREAM_MAXLEN": "200",
           "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(tmp_path / "program"),
           "HYBRIDCAM_COMPOSITOR_WIDTH": "320", "HYBRIDCAM_COMPOSITOR_HEIGHT": "180", "HYBRIDCAM_COMPOSITOR_FPS": "5",
           "HYBRIDCAM_COMPOSITOR_SEGMENT_S": str(SEGMENT_S), "HYBRIDCAM_COMPOSITOR_RETENTION_GB": str(RETENTION_GB),
           "HYBRIDCAM_SAMPLER_STREAM_NAME": stream, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(tmp_path / "spool"),
           "HYBRIDCAM_BRIDGE_QUEUE_URL": queue_url, "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "2"}
    (tmp_path / "logs").mkdir()
    runner = ServiceRunner(env, tmp_path / "logs")
    admin = redis.Redis.from_url(redis_server.url)
    bus = StreamBus(redis_server.url)
    processes, started_at = {}, {}
    rss: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in SERVICES}

    def start(name: str) -> None:
        processes[name] = runner.start(*SERVICES[name], name=name)
        started_at[name] = time.monotonic()
        rss[name].append([])

    restarts_due = {name: (i + 1) * total_s * 0.12 for i, name in enumerate(RESTART_ORDER)}
    unexpected_exits: dict[str, int] = {}
    redis_memory: list[tuple[float, int]] = []
    try:
        for name in SERVICES:
            start(name)
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < total_s:
            for name, due in list(restarts_due.items()):
                if elapsed >= due:
                    processes[name].send_signal(signal.SIGTERM)
                    processes[name].wait(timeout=30)
                    del restarts_due[name]
                    start(name)
            for name, code in exits(processes).items():
                unexpected_exits[name] = code
                start(name)
            now = time.monotonic()
            for name, process in processes.items():
                try:
                    rss[name][-1].append((now, rss_mb(process)))
                except Exception:  # noqa: BLE001 (it ended between the check and the sample)
                    pass
            redis_memory.append((now - t0, int(admin.info("memory")["used_memory"])))
            time.sleep(5.0)
        consumers = {group: [len(bus.redis.xinfo_consumers(frames_stream(c["id"]), group)) for c in cameras]
                     for group in ("edge_infer",)}
        consumers["sampler"] = [len(bus.redis.xinfo_consumers(frames_stream("wide"), "sampler"))]
        recorded = sum(p.stat().st_size for p in recordings.glob("*.mp4"))
        segments = len(list(recordings.glob("*.mp4")))
    finally:
        runner.stop_all()

    growth = {}
    for name, incarnations in rss.items():
        for index, samples in enumerate(incarnations):
            result = _growth(samples, samples[0][0] if samples else 0.0, warm_up_s) if samples else None
            if result is not None:
                growth[f"{name}#{index + 1}"] = result
    warm_redis = [mb for t, mb in redis_memory if t >= 120.0] or [mb for _, mb in redis_memory]
    redis_growth = (warm_redis[-1] - warm_redis[0]) / warm_redis[0]
    limit = RETENTION_GB * 1024**3
    flat = [k for k, (_, _, g) in growth.items() if g <= 0.05]
    record_fault(FaultResult(
        "11 soak", f"{total_s / 60:.0f} min, each of the 5 services restarted once (SIGTERM)", None,
        len(growth), len(flat), 0, 0, restarts=len(unexpected_exits),
        notes="RSS after warm-up: " + ", ".join(f"{k} {a:.0f}->{b:.0f} MB ({100 * g:+.1f}%)" for k, (a, b, g) in growth.items())
              + f"; Redis memory {warm_redis[0] / 1e6:.2f}->{warm_redis[-1] / 1e6:.2f} MB ({100 * redis_growth:+.1f}%) after 2 min"
              + f"; recordings {recorded / 1e6:.2f} MB in {segments} segments (bound {limit / 1e6:.2f} MB + 1 segment)"
              + f"; consumers per group {consumers}"))
    assert not unexpected_exits, unexpected_exits
    assert len(flat) == len(growth) and growth, growth
    assert redis_growth <= 0.10, redis_memory
    assert all(n == 1 for counts in consumers.values() for n in counts), consumers
    assert segments >= 2 and recorded <= limit + 512 * 1024
