"""Capacity bench: what one edge server of this machine's class analyses, written to a capacity file.

For each camera resolution and edge back-end it runs `capture` and `edge-infer` as separate
processes (as deployed) on N synthetic cameras at F fps, every camera's newest frame analysed
(`HYBRIDCAM_EDGE_SCHEDULE=every-camera`), and records the frames offered, captured and analysed per
second. It also measures the Redis memory one frame reference and one detection set take on the
streams, and the JPEG size of a real frame (the sampler's quality) at each resolution.

It also records the CPU time each process got (psutil), so that the per-frame CPU costs hold on
a machine other work shares: the analysed rate itself then says more about the load than the box.

The figures go to a capacity file (`config/capacity/<class>.yaml`) that `hybridcam plan` reads to
size a site: per back-end and resolution, CPU-seconds per captured and per analysed frame, and how
closely those costs reproduce each measured analysed rate from the CPU its processes got.

Usage: python bench/capacity.py [--resolutions 1280x720,1920x1080,3840x2160] [--cameras 1,3,6]
                                [--fps 15] [--seconds 10] [--backends auto,fp32] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.servers import LocalRedis  # noqa: E402
from hybridcam.plan.capacity_file import CapacityFile, MeasuredPoint, ResolutionFacts, cpu_model, this_machine_class  # noqa: E402
from shared.frame_ring import encode_jpeg  # noqa: E402
from shared.schemas import DetectionSet, Health, decode  # noqa: E402
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus  # noqa: E402

BACKEND_ENV = {
    "auto": {},
    "fp32": {"HYBRIDCAM_EDGE_BACKEND": "onnxruntime", "HYBRIDCAM_EDGE_PRECISION": "fp32", "HYBRIDCAM_EDGE_REQUESTS": "1"},
}
WARM_UP_S = 3.0  # after every camera's first detection: the pipeline settles
REAL_FRAME_CLIP = REPO / "tests" / "data" / "video" / "car-detection.mp4"


def captured_frames(bus: StreamBus) -> int:
    latest: dict[str, float] = {}
    for entry in bus.read_all(HEALTH_STREAM):
        health = entry.message
        if isinstance(health, Health) and health.service == "capture" and health.camera_id:
            latest[health.camera_id] = health.counters.get("frames", 0)
    return int(sum(latest.values()))


def site_document(count: int, width: int, height: int, fps: float) -> dict:
    cameras = [{"id": f"cam{i + 1}", "source": "synthetic", "role": "master" if i == 0 else "slave"} for i in range(count)]
    return {"site": "capacity-bench", "defaults": {"width": width, "height": height, "fps": fps, "cloud_sample_every": 10},
            "synthetic_scene": {"scenario": "walkthrough", "people": 3}, "cameras": cameras}


def measure_point(redis: LocalRedis, backend: str, count: int, width: int, height: int, fps: float,
                  seconds: float) -> tuple[MeasuredPoint, float, float]:
    """One run: (the point, Redis bytes per frame reference, Redis bytes per detection set)."""
    redis.restart()
    bus = StreamBus(redis.url)
    bus.redis.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.yaml"
        site.write_text(yaml.safe_dump(site_document(count, width, height, fps)))
        env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(site),
               "HYBRIDCAM_LOG_LEVEL": "WARNING", "HYBRIDCAM_EDGE_SCHEDULE": "every-camera", **BACKEND_ENV[backend]}
        procs = [subprocess.Popen([sys.executable, "-m", "hybridcam", cmd], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for cmd in ("capture", "edge-infer")]
        try:
            wait_for_detections(bus, count)
            time.sleep(WARM_UP_S)
            start_id = bus.redis.xinfo_stream(DETECTIONS_STREAM)["last-generated-id"] if bus.redis.exists(DETECTIONS_STREAM) else b"0-0"
            frames_before = captured_frames(bus)
            cpu_before = [cpu_seconds(proc.pid) for proc in procs]
            time.sleep(seconds)
            cpu_after = [cpu_seconds(proc.pid) for proc in procs]
            frames_after = captured_frames(bus)
            start = start_id.decode() if isinstance(start_id, bytes) else start_id
            items = bus.redis.xrange(DETECTIONS_STREAM, min=f"({start}")
            ref_bytes = stream_bytes_per_entry(bus, "frames:cam1")
            detection_bytes = stream_bytes_per_entry(bus, DETECTIONS_STREAM)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()
    analysed = [m for _, fields in items if isinstance(m := decode(fields[b"m"]), DetectionSet) and not m.tracked]
    point = MeasuredPoint(backend=backend, cameras=count, fps=fps, offered_fps=count * fps,
                          captured_fps=round((frames_after - frames_before) / seconds, 2),
                          analysed_fps=round(len(analysed) / seconds, 2),
                          capture_cpu=round((cpu_after[0] - cpu_before[0]) / seconds, 3),
                          edge_cpu=round((cpu_after[1] - cpu_before[1]) / seconds, 3), load_average=round(os.getloadavg()[0], 1))
    return point, ref_bytes, detection_bytes


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def wait_for_detections(bus: StreamBus, cameras: int, limit_s: float = 120.0) -> None:
    """Model loading takes seconds, more on a busy machine: measure only once every camera was analysed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        seen = {m.camera_id for _, fields in bus.redis.xrange(DETECTIONS_STREAM, count=2000)
                if isinstance(m := decode(fields[b"m"]), DetectionSet)} if bus.redis.exists(DETECTIONS_STREAM) else set()
        if len(seen) >= cameras:
            return
        time.sleep(0.5)
    raise SystemExit(f"capacity bench: not every one of {cameras} cameras was analysed within {limit_s:.0f} s")


def stream_bytes_per_entry(bus: StreamBus, stream: str) -> float:
    length = bus.redis.xlen(stream) if bus.redis.exists(stream) else 0
    if not length:
        return 0.0
    return float(bus.redis.memory_usage(stream, samples=0) or 0) / length


def real_frame_jpeg_bytes(width: int, height: int) -> int:
    capture = cv2.VideoCapture(str(REAL_FRAME_CLIP))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 60)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"capacity bench: cannot read a frame of {REAL_FRAME_CLIP}")
    return len(encode_jpeg(cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC), 85))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", default="1280x720,1920x1080,3840x2160")
    parser.add_argument("--cameras", default="1,3,6", help="camera counts measured at each resolution")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of every synthetic camera")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per point")
    parser.add_argument("--backends", default="auto,fp32", help="edge back-ends: auto (the automatic choice), fp32")
    parser.add_argument("--class-name", default=this_machine_class(), help="server class name (default from the CPU)")
    parser.add_argument("--out", type=Path, help="capacity file to write (default config/capacity/<class>.yaml)")
    args = parser.parse_args()
    out = args.out or REPO / "config" / "capacity" / f"{args.class_name}.yaml"
    resolutions = []
    for text in args.resolutions.split(","):
        width, height = (int(part) for part in text.lower().split("x"))
        resolutions.append((width, height))
    load_start = os.getloadavg()[0]
    print(f"capacity bench: class {args.class_name} ({cpu_model()}, {os.cpu_count()} cores), load average {load_start:.1f}",
          flush=True)
    facts: list[ResolutionFacts] = []
    ref_sizes: list[float] = []
    detection_sizes: list[float] = []
    with LocalRedis(appendonly=False) as redis:
        for width, height in resolutions:
            points = []
            for backend in args.backends.split(","):
                for count in (int(c) for c in args.cameras.split(",")):
                    point, ref_bytes, detection_bytes = measure_point(redis, backend, count, width, height, args.fps, args.seconds)
                    ref_sizes += [ref_bytes] if ref_bytes else []
                    detection_sizes += [detection_bytes] if detection_bytes else []
                    points.append(point)
                    print(f"  {width}x{height} {backend:<5} {count} cameras: offered {point.offered_fps:.0f}, captured "
                          f"{point.captured_fps:.1f}, analysed {point.analysed_fps:.1f} frames/s; CPU capture "
                          f"{point.capture_cpu:.2f}, edge-infer {point.edge_cpu:.2f} (load {point.load_average})", flush=True)
            facts.append(ResolutionFacts(width=width, height=height, jpeg_bytes=real_frame_jpeg_bytes(width, height), points=points))
    capacity = CapacityFile(
        server_class=args.class_name, description=f"{cpu_model()}, {os.cpu_count()} cores, no GPU (measured by bench/capacity.py)",
        measured=True, measured_on=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        cores=os.cpu_count() or 1, load_average_at_start=round(load_start, 1),
        redis_bytes_per_frame_ref=round(max(ref_sizes, default=0.0)), redis_bytes_per_detection_set=round(max(detection_sizes, default=0.0)),
        resolutions=facts)
    capacity.write(out)
    print(f"capacity bench: wrote {out}")
    for line in capacity.fit_report():
        print(f"  {line}")


if __name__ == "__main__":
    main()
