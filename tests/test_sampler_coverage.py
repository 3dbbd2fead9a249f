"""The sampler sees every master frame at a real camera rate, and counts the ones it does not.

Real parts: redis-server, `hybridcam capture` on real footage at 25 fps (three master cameras, the default ring),
`hybridcam sampler` with the adaptive policy against moto's Kinesis, and a stand-in for edge_infer that answers each
master frame 150 ms after capture (so the sampler waits for it, as it does live).
"""

from __future__ import annotations

import heapq
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest

from devstack.servers import LocalRedis
from shared.schemas import Detection, DetectionSet, FrameRef, SchemaError, decode
from shared.stream_bus import DETECTIONS_STREAM, StreamBus, frames_stream
from tests.fixtures.cloud_edge import latest_health
from tests.fixtures.pipeline import ServiceRunner, wait_until

CLIP = Path(__file__).parent / "data" / "video" / "road-25fps.mp4"  # real footage at 25 fps (credit in CREDITS.md beside it)
CAMERAS = ("east", "west", "north")
RUN_S = 8.0


def stand_in_edge(bus: StreamBus, stop: threading.Event, latency_s: float) -> None:
    """One detection set per master frame, published ``latency_s`` after its capture."""
    last = {frames_stream(c): "$" for c in CAMERAS}
    due: list[tuple[float, int, DetectionSet]] = []
    while not stop.is_set():
        for entry in bus.follow(last, count=200, block_ms=20):
            last[entry.stream] = entry.entry_id
            try:
                ref = decode(entry.payload)
            except SchemaError:
                continue
            if isinstance(ref, FrameRef):
                found = DetectionSet(camera_id=ref.camera_id, seq=ref.seq, frame_id=ref.frame_id, capture_ts=ref.capture_ts,
                                     width=ref.width, height=ref.height, model="stand-in", provider="test",
                                     latency_ms=latency_s * 1000,
                                     detections=[Detection(label="car", score=0.8, box=(10.0, 10.0, 60.0, 50.0))])
                heapq.heappush(due, (ref.capture_ts + latency_s, ref.seq, found))
        while due and due[0][0] <= time.time():
            bus.publish(DETECTIONS_STREAM, heapq.heappop(due)[2])


def run_site(redis_url: str, tmp_path: Path, aws_env: dict[str, str], extra: dict[str, str], latency_s: float) -> tuple[dict, str]:
    kinesis = boto3.client("kinesis")
    stream_name = f"frames-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 0.2})
    tmp_path.mkdir()
    site = tmp_path / "site.yaml"
    site.write_text("site: road\ndefaults: {width: 320, height: 240, fps: 25}\ncameras:\n" + "".join(
        f"  - {{id: {c}, role: master, source: 'file://{CLIP}?loop=1'}}\n" for c in CAMERAS))
    counters_file = tmp_path / "sampler-run.json"
    env = {**os.environ, **aws_env, "HYBRIDCAM_REDIS_URL": redis_url, "HYBRIDCAM_SITE_FILE": str(site),
           "HYBRIDCAM_SAMPLER_STREAM_NAME": stream_name, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(tmp_path / "spool"),
           "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(counters_file), "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.5", **extra}
    for name in ("HYBRIDCAM_CAPTURE_RING_SLOTS", "HYBRIDCAM_CAPTURE_RING_S"):
        if name not in extra:
            env.pop(name, None)
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_url)
    stop = threading.Event()
    edge = threading.Thread(target=stand_in_edge, args=(bus, stop, latency_s), daemon=True)
    edge.start()
    try:
        sampler = runner.start("sampler")
        assert wait_until(lambda: latest_health(bus, "sampler") is not None, 30), runner.logs()  # reading before the first frame
        capture = runner.start("capture")
        assert wait_until(lambda: latest_health(bus, "capture") is not None, 30), runner.logs()
        time.sleep(RUN_S)
        health = latest_health(bus, "sampler")
        message = health.message if health else ""
        sampler.send_signal(signal.SIGINT)  # the sampler first, so no frame is cut off by capture's stop (it removes its rings)
        sampler.wait(timeout=30)
        runner.stop_all()
        assert capture.returncode == 0 and sampler.returncode == 0, runner.logs()
    finally:
        stop.set()
        edge.join(timeout=5)
        runner.stop_all()
        bus.close()
    return json.loads(counters_file.read_text()), message


@pytest.mark.slow
def test_every_master_frame_is_evaluated_at_25_fps(redis_server: LocalRedis, tmp_path: Path,
                                                                               aws_env: dict[str, str]) -> None:
    counters, message = run_site(redis_server.url, tmp_path / "default", aws_env, {}, latency_s=0.15)
    seen = counters["frames_evaluated"] + counters["frames_not_evaluated"]
    assert seen >= 0.7 * len(CAMERAS) * 25 * RUN_S, counters
    assert counters["frames_not_evaluated"] <= 0.01 * seen and counters["coverage"] >= 0.99, \
        f"{counters['frames_not_evaluated']} of {seen} not evaluated: {counters}"
    assert counters["frames_seen"] - counters["frames_waiting"] - counters["frames_held"] == seen, "every frame read is accounted for"
    assert "not evaluated" not in message


@pytest.mark.slow
def test_frames_a_short_ring_loses_are_counted_and_said(redis_server: LocalRedis, tmp_path: Path, aws_env: dict[str, str]) -> None:
    """A ring too short for the sampler's wait for edge results: frames go missing, and every one is counted and said."""
    counters, message = run_site(redis_server.url, tmp_path / "short", aws_env, {"HYBRIDCAM_CAPTURE_RING_SLOTS": "4"},
                                 latency_s=0.25)
    seen = counters["frames_evaluated"] + counters["frames_not_evaluated"]
    missed = counters["frames_not_evaluated"]
    assert missed >= 0.5 * seen, counters
    assert missed == sum(counters.get(f"skipped_{reason}", 0) for reason in ("gone", "unreadable", "decimated")), counters
    assert not counters.get("skipped_decimated"), "a ring shorter than the edge wait is no backlog: decimating would not help"
    assert counters["coverage"] == pytest.approx(1 - missed / seen, abs=1e-4)
    assert "not evaluated" in message and "HYBRIDCAM_CAPTURE_RING_S" in message, message


def test_a_sampler_behind_the_rings_decimates_on_purpose_at_a_stated_rate_and_catches_up() -> None:
    """services/sampler/catch_up.py on its own: frames read later than the ring can afford are skipped evenly (1 in N,
    N growing while behind), the rate is stated, and every frame is evaluated again once the backlog is gone."""
    from services.sampler.catch_up import CatchUp

    catch_up = CatchUp()
    span, wait, now = 1.0, 0.3, 1000.0
    skipped = []
    for seq in range(100):  # 4 s of a 25 fps camera, each frame read 0.6 s after capture (the limit is 0.525 s)
        now += 0.04
        skip = catch_up.skip("road", seq, 0.6, span, now, wait)
        every = catch_up.decimating().get("road", 1)
        assert skip == (every > 1 and seq % every != 0), "1 in N, evenly by sequence number"
        skipped.append(skip)
    assert every >= 4 and sum(skipped) >= 50, (every, sum(skipped))
    assert "road 1 in" in catch_up.describe() and "behind capture" in catch_up.describe()
    for seq in range(100, 400):  # caught up: read 0.05 s after capture
        now += 0.04
        catch_up.skip("road", seq, 0.05, span, now, wait)
    assert catch_up.decimating() == {} and catch_up.describe() == ""
    assert not catch_up.skip("road", 401, 0.05, span, now + 1, wait)
    assert not any(catch_up.skip("short", seq, 0.1, 0.08, now + seq, wait) for seq in range(20)), \
        "a ring shorter than the edge wait: frames are lost (and counted as gone), not decimated"
