"""The pixel path across nodes: frame references with inline JPEGs on the site bus, measured.

Runs `capture` (synthetic cameras) twice against a real redis-server, first as on one server (frame
references only: the baseline), then as in the Kubernetes manifests (HYBRIDCAM_CAPTURE_INLINE_JPEG=true,
so readers on other nodes get each frame's JPEG in its reference), and prints for each: frames/s
published, bytes/s onto the site Redis (what every reader on another node pulls once more), bytes per
reference, Redis memory of the frame streams, and capture's CPU, with the ratios to the baseline.

Usage: python bench/cross_node.py [--cameras 3] [--size 1280x720] [--fps 15] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.servers import LocalRedis  # noqa: E402
from shared.stream_bus import StreamBus, frames_stream  # noqa: E402


def measure(redis: LocalRedis, inline: bool, cameras: int, width: int, height: int, fps: float, seconds: float) -> dict:
    redis.restart()
    bus = StreamBus(redis.url)
    bus.redis.flushall()
    ids = [f"cam{i + 1}" for i in range(cameras)]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.yaml"
        site.write_text(yaml.safe_dump({"site": "cross-node-bench", "defaults": {"width": width, "height": height, "fps": fps},
                                        "synthetic_scene": {"scenario": "walkthrough", "people": 3},
                                        "cameras": [{"id": i, "source": "synthetic"} for i in ids]}))
        env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_LOG_LEVEL": "WARNING",
               "HYBRIDCAM_CAPTURE_INLINE_JPEG": "true" if inline else "false"}
        process = subprocess.Popen([sys.executable, "-m", "hybridcam", "capture"], env=env, cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not all(bus.redis.exists(frames_stream(i)) for i in ids) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2.0)
            start_ids = {i: bus.redis.xinfo_stream(frames_stream(i))["last-generated-id"] for i in ids}
            cpu_before = sum(psutil.Process(process.pid).cpu_times()[:2])
            time.sleep(seconds)
            cpu = (sum(psutil.Process(process.pid).cpu_times()[:2]) - cpu_before) / seconds
            entries = []
            for i in ids:
                start = start_ids[i].decode() if isinstance(start_ids[i], bytes) else start_ids[i]
                entries += bus.redis.xrange(frames_stream(i), min=f"({start}")
            memory = sum(bus.redis.memory_usage(frames_stream(i), samples=0) or 0 for i in ids)
        finally:
            process.terminate()
            process.wait()
    size = sum(len(fields[b"m"]) for _, fields in entries)
    return {"frames_per_s": len(entries) / seconds, "bytes_per_s": size / seconds,
            "bytes_per_ref": size / len(entries) if entries else 0.0, "stream_memory": memory, "capture_cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    print(f"cross-node pixel path: {args.cameras} synthetic cameras {width}x{height} at {args.fps:g} fps, {args.seconds:g} s each, "
          f"load average {os.getloadavg()[0]:.1f}")
    with LocalRedis(appendonly=False) as redis:
        baseline = measure(redis, False, args.cameras, width, height, args.fps, args.seconds)
        inline = measure(redis, True, args.cameras, width, height, args.fps, args.seconds)
    for label, row in (("references only (one server, baseline)", baseline), ("references + inline JPEG (across nodes)", inline)):
        print(f"  {label}: {row['frames_per_s']:.1f} frames/s, {row['bytes_per_s'] / 1e6:.3f} MB/s "
              f"({row['bytes_per_s'] * 8 / 1e6:.1f} Mbit/s) onto Redis, {row['bytes_per_ref']:,.0f} B per reference, "
              f"frame streams {row['stream_memory'] / 2**20:.1f} MiB in Redis, capture CPU {row['capture_cpu']:.2f}")
    print(f"  ratios to the baseline: bytes/s x{inline['bytes_per_s'] / max(baseline['bytes_per_s'], 1):.0f}, "
          f"Redis memory x{inline['stream_memory'] / max(baseline['stream_memory'], 1):.0f}, "
          f"capture CPU x{inline['capture_cpu'] / max(baseline['capture_cpu'], 1e-6):.1f}; "
          f"per camera {inline['bytes_per_s'] / args.cameras * 8 / 1e6:.1f} Mbit/s into Redis and again out to each reader "
          "on another node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
