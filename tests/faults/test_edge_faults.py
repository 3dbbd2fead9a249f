"""Fault scenarios of the edge: real redis-server, real service processes, faults injected from outside.

Each test records one row of the fault table (tests/faults/report.py). Numbers follow docs/reliability.md.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis

from services.edge_infer.inference_loop import SKIP_TALLY_KEY
from shared.schemas import DetectionSet, FrameRef
from shared.stream_bus import DEADLETTER_STREAM, DETECTIONS_STREAM, PAYLOAD_FIELD, StreamBus, frames_stream
from tests.faults.edge_stack import exits, kill9, recent_fps, synthetic_cameras, write_fault_site
from tests.faults.report import FaultResult, full_run, record_fault
from tests.fixtures.pipeline import ServiceRunner, wait_until


@pytest.fixture()
def runner(redis_server, tmp_path: Path) -> Iterator[ServiceRunner]:
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_EDGE_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_CAPTURE_HEALTH_INTERVAL_S": "0.5"}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    logs = tmp_path / "logs"
    logs.mkdir()
    service_runner = ServiceRunner(env, logs)
    try:
        yield service_runner
    finally:
        service_runner.stop_all()


def edge_sets(bus: StreamBus) -> list[DetectionSet]:
    return [e.message for e in bus.read_all(DETECTIONS_STREAM) if isinstance(e.message, DetectionSet) and e.message.source == "edge"]


def pending(bus: StreamBus, streams: list[str], group: str) -> int:
    total = 0
    for stream in streams:
        try:
            total += int(bus.redis.xpending(stream, group)["pending"])
        except redis.ResponseError:
            pass
    return total


def groups_exist(bus: StreamBus, streams: list[str], group: str) -> bool:
    try:
        return all(any(g["name"] == group.encode() for g in bus.redis.xinfo_groups(s)) for s in streams)
    except redis.ResponseError:
        return False


def dead_lettered(bus: StreamBus, group: str) -> int:
    return sum(1 for _, fields in bus.redis.xrange(DEADLETTER_STREAM) if fields.get(b"group") == group.encode())


def tallied(bus: StreamBus) -> int:
    return sum(int(v) for v in bus.redis.hgetall(SKIP_TALLY_KEY).values())


# -- 1 ---------------------------------------------------------------------------------------------------


def test_1_kill_edge_infer_mid_run_on_six_cameras(redis_server, runner: ServiceRunner, tmp_path: Path) -> None:
    cameras = synthetic_cameras(6)
    site = write_fault_site(tmp_path / "site.yaml", cameras, fps=4, width=320, height=180)
    runner.env.update({"HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_EDGE_CLAIM_IDLE_MS": "1000"})
    bus = StreamBus(redis_server.url)
    streams = [frames_stream(c["id"]) for c in cameras]
    first = runner.start("edge-infer", name="edge-infer-1")
    assert wait_until(lambda: groups_exist(bus, streams, "edge_infer"), 60), runner.logs()  # every frame from here is owed
    capture = runner.start("capture", "--duration", "26")
    assert wait_until(lambda: len(edge_sets(bus)) >= 6, 60), runner.logs()
    time.sleep(3)
    kill9(first)
    time.sleep(5)
    restarted_at = time.time()
    second = runner.start("edge-infer", name="edge-infer-2")
    assert wait_until(lambda: any(s.published_ts > restarted_at for s in edge_sets(bus)), 60), runner.logs()
    recovery_s = min(s.published_ts for s in edge_sets(bus) if s.published_ts > restarted_at) - restarted_at
    capture.wait(timeout=60)
    assert wait_until(lambda: pending(bus, streams, "edge_infer") == 0, 60), runner.logs()
    time.sleep(1.0)
    assert second.poll() is None, runner.logs()

    expected = sum(int(bus.redis.xlen(s)) for s in streams)
    sets = edge_sets(bus)
    ids = Counter(s.frame_id for s in sets)
    skips, dead = tallied(bus), dead_lettered(bus, "edge_infer")
    seen = len(ids) + skips + dead
    duplicated = sum(n - 1 for n in ids.values()) + max(0, seen - expected)
    lost = max(0, expected - seen)
    record_fault(FaultResult(
        "1 kill -9 edge_infer", "kill -9 edge_infer, restart after 5 s (6 cameras)", recovery_s, expected, seen, lost, duplicated,
        notes=f"{len(ids)} detection sets, {skips} counted skips, {dead} dead-lettered; pending 0 after the run"))
    assert lost == 0 and duplicated == 0
    assert pending(bus, streams, "edge_infer") == 0


# -- 3 ---------------------------------------------------------------------------------------------------


def _frame_ref_body(**fields) -> bytes:
    body = {"schema": "frame_ref", "v": 1, "camera_id": "wide", "seq": 10**6, "capture_ts": time.time(),
            "width": 320, "height": 180, **fields}
    return msgpack.packb(body, use_bin_type=True)


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


POISON = {  # name -> raw stream body
    "inf timestamp": lambda: _frame_ref_body(capture_ts=math.inf),
    "NaN timestamp": lambda: _frame_ref_body(capture_ts=math.nan),
    "1e20 timestamp": lambda: _frame_ref_body(capture_ts=1e20),
    "slot out of range": lambda: _frame_ref_body(slot=10**9, shm_name="hybridcam_wide"),
    "deeply nested msgpack": lambda: msgpack.packb({"schema": "frame_ref", "v": 1, "x": _nested(500)}),
    "20 MB body": lambda: b"\x00" * (20 * 1024 * 1024),
    "garbage JPEG": lambda: FrameRef(camera_id="wide", seq=10**6 + 1, capture_ts=time.time() + 5, width=320, height=180,
                                     jpeg=b"\xff\xd8 not a jpeg").encode(),
    "slot past the ring": lambda: FrameRef(camera_id="wide", seq=10**6 + 2, capture_ts=time.time() + 5, width=320, height=180,
                                           shm_name="hybridcam_wide", slot=4000).encode(),
}
DECODABLE = {"garbage JPEG", "slot past the ring"}  # valid messages whose pixels cannot be had: counted drops


def test_3_poison_entries_are_dead_lettered_or_counted(redis_server, runner: ServiceRunner, tmp_path: Path) -> None:
    cameras = synthetic_cameras(2)
    site = write_fault_site(tmp_path / "site.yaml", cameras, fps=4, width=320, height=180)
    runner.env.update({"HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_EDGE_CLAIM_IDLE_MS": "1000",
                       "HYBRIDCAM_EDGE_MAX_FRAME_AGE_MS": "60000"})
    bus = StreamBus(redis_server.url)
    streams = [frames_stream(c["id"]) for c in cameras]
    processes = {"capture": runner.start("capture", "--duration", "40"), "edge_infer": runner.start("edge-infer")}
    assert wait_until(lambda: len(edge_sets(bus)) >= 2, 60), runner.logs()
    started = time.monotonic()
    for name, body in POISON.items():
        if name not in DECODABLE:
            bus.redis.xadd(frames_stream("wide"), {PAYLOAD_FIELD: body()})
    undecodable = len(POISON) - len(DECODABLE)
    assert wait_until(lambda: dead_lettered(bus, "edge_infer") >= undecodable, 60), runner.logs()
    for name, reason in (("garbage JPEG", "ValueError"), ("slot past the ring", "FrameGone")):
        # one at a time, stamped a little ahead: the newest frame of its batch, so it is analysed (not skipped as backlog)
        bus.redis.xadd(frames_stream("wide"), {PAYLOAD_FIELD: POISON[name]()})
        assert wait_until(lambda: bus.redis.hget(SKIP_TALLY_KEY, f"wide.{reason}") is not None, 30), runner.logs()
    recovery_s = time.monotonic() - started
    sets_before = len(edge_sets(bus))
    assert wait_until(lambda: len(edge_sets(bus)) > sets_before + 4, 30), "edge_infer stopped producing after the poison"
    assert wait_until(lambda: pending(bus, streams, "edge_infer") <= 2 * len(cameras), 30)
    counted = dead_lettered(bus, "edge_infer") + int(bus.redis.hget(SKIP_TALLY_KEY, "wide.FrameGone") or 0) \
        + int(bus.redis.hget(SKIP_TALLY_KEY, "wide.ValueError") or 0)
    ended = exits(processes)
    record_fault(FaultResult(
        "3 poison entries", "inf/NaN/1e20 ts, slots out of range, garbage JPEG, nested msgpack, 20 MB body", recovery_s,
        len(POISON), min(counted, len(POISON)), max(0, len(POISON) - counted), 0, restarts=len(ended),
        notes=f"{dead_lettered(bus, 'edge_infer')} dead-lettered at decode, {counted - dead_lettered(bus, 'edge_infer')} "
              f"counted drops; 0 exits; dead-letter bodies capped at 1 MiB"))
    assert not ended, f"services exited: {ended}\n{runner.logs()}"
    assert counted == len(POISON)
    big = [f for _, f in bus.redis.xrange(DEADLETTER_STREAM) if int(f.get(b"size", 0)) > 1024 * 1024]
    assert big and all(len(f[PAYLOAD_FIELD]) <= 1024 * 1024 for f in big)


# -- 4 ---------------------------------------------------------------------------------------------------


def _camera_rates(bus: StreamBus, camera_ids: list[str]) -> dict[str, float]:
    return {c: recent_fps(bus, c, window_s=2.0) for c in camera_ids}


def _time_to_recover(bus: StreamBus, baseline: dict[str, float], started: float, timeout_s: float = 30.0) -> float | None:
    def recovered() -> bool:
        rates = _camera_rates(bus, list(baseline))
        return all(rates[c] >= 0.9 * baseline[c] for c in baseline)

    return time.monotonic() - started if wait_until(recovered, timeout_s, interval_s=0.2) else None


@pytest.mark.faults_slow
def test_4_redis_memory_squeeze_and_restart(redis_server, runner: ServiceRunner, tmp_path: Path) -> None:
    cameras = synthetic_cameras(3)
    camera_ids = [c["id"] for c in cameras]
    site = write_fault_site(tmp_path / "site.yaml", cameras, fps=5, width=320, height=180)
    runner.env.update({"HYBRIDCAM_SITE_FILE": str(site)})
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory-policy", "noeviction")
    bus = StreamBus(redis_server.url)
    processes = {"capture": runner.start("capture"), "edge_infer": runner.start("edge-infer")}
    assert wait_until(lambda: len(edge_sets(bus)) >= 3, 60), runner.logs()
    time.sleep(6)
    baseline = _camera_rates(bus, camera_ids)
    assert all(rate > 0 for rate in baseline.values()), baseline

    used = int(admin.info("memory")["used_memory"])
    squeeze_started = time.monotonic()
    admin.config_set("maxmemory", used + 32 * 1024)  # the detection and health streams fill this within seconds
    squeezed = {c: 0.0 for c in camera_ids}
    refused = wait_until(lambda: "refused" in runner.logs(), 30)
    time.sleep(max(0.0, 30 - (time.monotonic() - squeeze_started)))
    squeezed = _camera_rates(bus, camera_ids)
    admin.config_set("maxmemory", 0)
    relief = time.monotonic()
    squeeze_recovery = _time_to_recover(bus, baseline, relief)

    redis_server.restart(down_for_s=2.0)
    admin = redis.Redis.from_url(redis_server.url)
    back = time.monotonic()
    restart_recovery = _time_to_recover(bus, baseline, back)
    ended = exits(processes)
    restarts = int(sum(h.message.counters.get("restarts", 0) for h in _latest_capture_health(bus).values()))
    worst = max(x for x in (squeeze_recovery, restart_recovery) if x is not None) if (squeeze_recovery and restart_recovery) else None
    record_fault(FaultResult(
        "4 redis squeeze + restart", "maxmemory just above used for 30 s (noeviction), then a Redis restart",
        worst, len(camera_ids), sum(1 for c in camera_ids if squeeze_recovery is not None and restart_recovery is not None),
        0, 0, restarts=len(ended) + restarts,
        notes=f"{'writes refused during the squeeze; ' if refused else 'no write was refused; '}"
              f"fps back to >=90% of baseline {squeeze_recovery or float('nan'):.1f} s after relief, "
              f"{restart_recovery or float('nan'):.1f} s after the restart; during the squeeze "
              + ", ".join(f"{c} {squeezed[c]:.1f}/{baseline[c]:.1f} fps" for c in camera_ids)))
    assert not ended, f"services exited: {ended}\n{runner.logs()}"
    assert squeeze_recovery is not None and squeeze_recovery <= 10.0, runner.logs()
    assert restart_recovery is not None and restart_recovery <= 10.0, runner.logs()
    assert restarts == 0 and refused


def _latest_capture_health(bus: StreamBus) -> dict[str, object]:
    from shared.schemas import Health

    latest: dict[str, object] = {}
    for entry in bus.read_all("health"):
        if isinstance(entry.message, Health) and entry.message.service == "capture":
            latest[entry.message.instance] = entry
    return latest
