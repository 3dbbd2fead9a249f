"""Fault scenario 12: a busy real scene for hours. Real footage of a road that is never empty (cars in both
directions), looped at 25 fps on a master and a slave camera, through capture, edge_infer, the sampler (adaptive
policy, moto's Kinesis) and the compositor. 5 minutes by default; `make faults FULL=1` runs 1 hour,
HYBRIDCAM_FAULTS_SOAK_HOURS=N (`make faults HOURS=N`) N hours.

Nothing may grow and nothing may slow down: process memory (RSS) after warm-up and Redis memory flat within 5 %,
no restarts, the sampler's coverage of master frames and the program's frame rate steady from window to window.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import boto3
import pytest
import redis
import yaml

from shared.stream_bus import StreamBus
from tests.faults.edge_stack import exits, rss_mb
from tests.faults.report import FaultResult, full_run, record_fault
from tests.fixtures.cloud_edge import latest_health
from tests.fixtures.pipeline import ServiceRunner

CLIP = Path(__file__).resolve().parents[1] / "data" / "video" / "road-25fps.mp4"  # real footage at 25 fps (credit beside it)
SERVICES = {"capture": ("capture",), "edge_infer": ("edge-infer",), "sampler": ("sampler",), "compositor": ("compositor",)}
FPS = 25
SAMPLE_S = 5.0
WINDOW_S = 30.0
WARM_UP_S = 120.0  # streams fill to their bound and every service reaches its working set


def soak_seconds() -> float:
    hours = os.environ.get("HYBRIDCAM_FAULTS_SOAK_HOURS")
    if hours:
        return float(hours) * 3600
    return 3600.0 if full_run() else 300.0


def busy_site(path: Path) -> Path:
    source = f"file://{CLIP}?loop=1"
    site = {"site": "busy-road", "defaults": {"width": 320, "height": 240, "fps": FPS},
            "cameras": [{"id": "road", "role": "master", "source": source},
                        {"id": "near-lane", "role": "slave", "source": f"{source}&crop=0,0.3,0.7,1",
                         "covers": {"master": "road", "region": [0.0, 0.3, 0.7, 1.0]}}]}
    path.write_text(yaml.safe_dump(site))
    return path


def flat(samples: list[float]) -> float:
    """Growth from the start of the warm part to its end (medians of three samples, against noise)."""
    first, last = statistics.median(samples[:3]), statistics.median(samples[-3:])
    return (last - first) / first


def window_rates(points: list[tuple[float, float]]) -> list[float]:
    """Per-window rate of a growing counter sampled as (time, value)."""
    rates, start = [], points[0] if points else None
    for t, value in points[1:]:
        if start is not None and t - start[0] >= WINDOW_S:
            rates.append((value - start[1]) / (t - start[0]))
            start = (t, value)
    return rates


@pytest.mark.faults_slow
def test_12_busy_real_scene_soak(redis_server, aws_env: dict[str, str], tmp_path: Path) -> None:
    total_s = max(soak_seconds(), WARM_UP_S + 4 * WINDOW_S)
    stream = f"busy-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    env = {**os.environ, **aws_env, "HYBRIDCAM_REDIS_URL": redis_server.url, "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_SITE_FILE": str(busy_site(tmp_path / "site.yaml")), "HYBRIDCAM_EDGE_THREADS": "1",
           "HYBRIDCAM_STREAM_MAXLEN": "200",  # every stream reaches its bound within the warm-up (the default 2000 takes minutes)
           "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(tmp_path / "program"),
           "HYBRIDCAM_COMPOSITOR_WIDTH": "640", "HYBRIDCAM_COMPOSITOR_HEIGHT": "360", "HYBRIDCAM_COMPOSITOR_FPS": str(FPS),
           "HYBRIDCAM_COMPOSITOR_SEGMENT_S": "30", "HYBRIDCAM_COMPOSITOR_RETENTION_GB": "0.01",
           "HYBRIDCAM_SAMPLER_STREAM_NAME": stream, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(tmp_path / "spool"),
           "HYBRIDCAM_SAMPLER_WATCH_LABELS": "car,truck,bus,motorcycle,person"}
    (tmp_path / "logs").mkdir()
    runner = ServiceRunner(env, tmp_path / "logs")
    admin = redis.Redis.from_url(redis_server.url)
    bus = StreamBus(redis_server.url)
    processes = {name: runner.start(*command, name=name) for name, command in SERVICES.items()}
    rss: dict[str, list[float]] = {name: [] for name in SERVICES}
    redis_memory: list[float] = []
    pictures: list[tuple[float, float]] = []
    evaluated: list[tuple[float, float, float]] = []  # (time, evaluated, not evaluated)
    unexpected_exits: dict[str, int] = {}
    try:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < total_s:
            time.sleep(SAMPLE_S)
            unexpected_exits.update(exits(processes))
            if unexpected_exits:
                break
            if elapsed < WARM_UP_S:
                continue
            for name, process in processes.items():
                rss[name].append(rss_mb(process))
            redis_memory.append(float(admin.info("memory")["used_memory"]))
            compositor, sampler = latest_health(bus, "compositor"), latest_health(bus, "sampler")
            if compositor is not None:
                pictures.append((elapsed, compositor.counters.get("pictures", 0.0)))
            if sampler is not None:
                evaluated.append((elapsed, sampler.counters.get("frames_evaluated", 0.0),
                                  sampler.counters.get("frames_not_evaluated", 0.0)))
    finally:
        runner.stop_all()
        bus.close()

    assert not unexpected_exits, f"{unexpected_exits}\n{runner.logs()}"
    growth = {name: flat(samples) for name, samples in rss.items()}
    redis_growth = flat(redis_memory)
    program_fps = window_rates(pictures)
    coverage = [(e1 - e0) / max(1.0, (e1 - e0) + (m1 - m0))
                for (_, e0, m0), (_, e1, m1) in zip(evaluated[:: int(WINDOW_S / SAMPLE_S)], evaluated[int(WINDOW_S / SAMPLE_S)::
                                                                                                      int(WINDOW_S / SAMPLE_S)])]
    total_evaluated, total_missed = evaluated[-1][1] - evaluated[0][1], evaluated[-1][2] - evaluated[0][2]
    overall = total_evaluated / max(1.0, total_evaluated + total_missed)  # after the warm-up, like the other figures
    record_fault(FaultResult(
        "12 busy soak", f"{total_s / 60:.0f} min of a busy real road looped at {FPS} fps (master + slave)", None,
        len(growth) + 1, sum(g <= 0.05 for g in growth.values()) + (redis_growth <= 0.05), 0, 0, restarts=len(unexpected_exits),
        notes=f"RSS after {WARM_UP_S:.0f} s warm-up: " + ", ".join(f"{k} {rss[k][0]:.0f}->{rss[k][-1]:.0f} MB ({100 * g:+.1f}%)"
                                                                  for k, g in growth.items())
              + f"; Redis memory {redis_memory[0] / 1e6:.2f}->{redis_memory[-1] / 1e6:.2f} MB ({100 * redis_growth:+.1f}%)"
              + f"; sampler coverage {overall:.2%} after warm-up ({total_missed:.0f} of {total_evaluated + total_missed:.0f} "
                f"master frames not evaluated), per {WINDOW_S:.0f} s window {min(coverage, default=0):.2%}-"
                f"{max(coverage, default=0):.2%}"
              + f"; program fps per window {min(program_fps, default=0):.1f}-{max(program_fps, default=0):.1f} "
                f"(median {statistics.median(program_fps) if program_fps else 0:.1f})"))
    assert all(g <= 0.05 for g in growth.values()), growth
    assert redis_growth <= 0.05, redis_memory
    assert program_fps and min(program_fps) >= 0.8 * statistics.median(program_fps), program_fps
    assert coverage and overall >= 0.99 and min(coverage) >= 0.95, (overall, coverage)
