"""Fault scenarios of the edge: real redis-server, real service processes, faults injected from outside.

Each test records one row of the fault table (tests/faults/report.py). Numbers follow docs/reliability.md.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
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


def stuck_report(bus: StreamBus, streams: list[str], service: subprocess.Popen, runner: ServiceRunner) -> str:
    """Who holds the entries still pending, and where the service's threads are (its SIGUSR1 stack dump)."""
    holders = {stream: bus.redis.xpending_range(stream, "edge_infer", "-", "+", 20) for stream in streams}
    if service.poll() is None:
        service.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
    return f"pending: {holders}; the service's exit code: {service.poll()}\n{runner.logs()}"


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
    assert wait_until(lambda: pending(bus, streams, "edge_infer") == 0, 60), stuck_report(bus, streams, second, runner)
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
        assert wait_until(lambda reason=reason: bus.redis.hget(SKIP_TALLY_KEY, f"wide.{reason}") is not None, 30), runner.logs()
    recovery_s = time.monotonic() - started
    sets_before = len(edge_sets(bus))
    assert wait_until(lambda: len(edge_sets(bus)) > sets_before + 4, 30), "edge_infer stopped producing after the poison"
    assert wait_until(lambda: pending(bus, streams, "edge_infer") <= 2 * len(cameras), 30)
    edge_log = "\n".join(p.read_text(errors="replace") for p in runner.log_dir.glob("edge-infer*.log"))
    # the tally counts real frames dropped under load too: the poison's own drops are named in the log
    poison_drops = sum(1 for seq in (10**6 + 1, 10**6 + 2) if f"frame {seq} dropped" in edge_log)
    counted = dead_lettered(bus, "edge_infer") + poison_drops
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


# -- 10 --------------------------------------------------------------------------------------------------


def _corrupt_h264(path: Path) -> Path:
    """A short H.264 stream with every 20th byte of its later part overwritten: decodes partly, then fails."""
    import random
    import subprocess

    clean = path.with_suffix(".clean.h264")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10", "-t", "3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264", str(clean)], check=True, timeout=60)
    data = bytearray(clean.read_bytes())
    rng = random.Random(1)
    for index in range(len(data) // 3, len(data), 20):
        data[index] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def _frame_times(bus: StreamBus, camera_id: str) -> list[float]:
    return [int(raw_id.split(b"-")[0]) / 1000 for raw_id, _ in bus.redis.xrange(frames_stream(camera_id))]


def _capture_reports(bus: StreamBus, camera_id: str) -> list:
    from shared.schemas import Health

    return [e.message for e in bus.read_all("health")
            if isinstance(e.message, Health) and e.message.service == "capture" and e.message.camera_id == camera_id]


def _fps_of(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def _leave_ok_latency(bus: StreamBus, camera_id: str) -> float | None:
    """From the last frame before the camera's first non-ok report after it delivered, to that report
    (from its first ok report for a camera that opened but never delivered; 0 for one never reported ok)."""
    frames = _frame_times(bus, camera_id)
    reports = _capture_reports(bus, camera_id)
    first_ok = next((r for r in reports if r.state == "ok"), None)
    if first_ok is None:
        return 0.0
    if not frames:  # opened (reported ok) but never delivered: the fault starts at that report
        later = next((r for r in reports if r.ts > first_ok.ts and r.state != "ok"), None)
        return None if later is None else later.ts - first_ok.ts
    for report in reports:
        if report.ts > frames[0] and report.state != "ok":
            last_frame = max((t for t in frames if t <= report.ts), default=frames[0])
            return report.ts - last_frame
    return None


@pytest.mark.faults_slow
def test_10_camera_faults(redis_server, runner: ServiceRunner, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from tests.faults.edge_stack import MjpegCamera

    good = [{"id": "wide", "role": "master", "source": "synthetic"},
            {"id": "cam1", "role": "slave", "source": "synthetic", "covers": {"master": "wide", "region": [0, 0, 0.5, 1]}}]
    bus = StreamBus(redis_server.url)
    runner.env.update({"HYBRIDCAM_SITE_FILE": str(write_fault_site(tmp_path / "good.yaml", good, fps=5, width=320, height=180))})
    baseline_s = 12.0
    runner.start("capture", "--duration", str(baseline_s), name="capture-baseline").wait(timeout=60)
    baseline = {c["id"]: _fps_of(_frame_times(bus, c["id"])) for c in good}
    for stream in [frames_stream(c["id"]) for c in good] + ["health"]:
        bus.redis.delete(stream)

    jpeg = cv2.imencode(".jpg", np.full((180, 320, 3), 90, np.uint8))[1].tobytes()
    stalled, hanging = MjpegCamera("stall", jpeg, fps=5, stall_after_s=6), MjpegCamera("hang_up", jpeg, fps=5)
    faulty = [{"id": "stalled", "role": "slave", "source": stalled.url},
              {"id": "hangup", "role": "slave", "source": hanging.url},
              {"id": "corrupt", "role": "slave", "source": f"file://{_corrupt_h264(tmp_path / 'corrupt.h264')}"}]
    runner.env.update({"HYBRIDCAM_SITE_FILE": str(write_fault_site(tmp_path / "faulty.yaml", good + faulty, fps=5,
                                                                   width=320, height=180))})
    minute = 120.0 if full_run() else 60.0
    started = time.time()
    capture = runner.start("capture", "--duration", str(minute), name="capture-faults")
    capture.wait(timeout=minute + 60)
    elapsed = time.time() - started
    stalled.close()
    hanging.close()

    log = next(p for p in runner.log_dir.glob("capture-faults*.log")).read_text(errors="replace").splitlines()
    frames_of = {c["id"]: len(_frame_times(bus, c["id"])) for c in faulty}
    per_minute = 60.0 / elapsed
    rows = {}
    for camera in (c["id"] for c in faulty):
        final = _capture_reports(bus, camera)[-1]
        rows[camera] = {
            "leave_ok_s": _leave_ok_latency(bus, camera),
            "reconnects_per_min": final.counters.get("reconnects", 0) * per_minute,
            "log_lines_per_min": sum(1 for line in log if camera in line) * per_minute,
        }
    unattributed = [line for line in log if not any(c["id"] in line for c in good + faulty)
                    and "capture INFO" not in line]
    fps_ratio = {c["id"]: _fps_of(_frame_times(bus, c["id"])) / baseline[c["id"]] for c in good}
    ok = [c for c, r in rows.items() if r["leave_ok_s"] is not None and r["leave_ok_s"] <= 5.0
          and r["reconnects_per_min"] <= 12 and r["log_lines_per_min"] <= 20]
    record_fault(FaultResult(
        "10 camera faults", "stalled HTTP camera, camera hanging up after each open, corrupt H.264",
        max(99.0 if r["leave_ok_s"] is None else r["leave_ok_s"] for r in rows.values()), len(rows), len(ok), 0, 0, restarts=int(capture.returncode != 0),
        notes="; ".join(f"{c}: left ok in {r['leave_ok_s'] if r['leave_ok_s'] is None else round(r['leave_ok_s'], 1)} s, "
                        f"{r['reconnects_per_min']:.1f} reconnects/min, {r['log_lines_per_min']:.0f} log lines/min"
                        for c, r in rows.items())
              + f"; frames from the faulty cameras {frames_of}; other cameras at " + ", ".join(f"{c} {100 * v:.0f}%" for c, v in fps_ratio.items()) + " of baseline fps"))
    assert capture.returncode == 0, runner.logs()
    assert len(ok) == len(rows), rows
    assert len(unattributed) <= 20 * elapsed / 60, unattributed[:20]
    assert all(ratio >= 0.95 for ratio in fps_ratio.values()), fps_ratio
