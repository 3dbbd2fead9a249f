"""Edge benchmark: detector overhead, frame transport hop latency, sustained analysed fps.

Prints three tables:
1. per-frame `session.run` time against the full pre + infer + post time (NanoDet, 1080p frame);
2. hop latency p50/p99 of a 1080p frame sent as a shared-memory reference vs as an inline JPEG,
   through a real redis-server: from the frame being in the producer's hands (committed to its ring
   slot, or about to be JPEG-encoded) to the consumer holding the pixels;
3. sustained analysed frames/s with 1, 3 and 6 synthetic 1080p cameras at 15 fps (capture and
   edge_infer run as separate processes, as deployed);
4.-7. back-ends against FP32, end to end against FP32 forced, motion-aware scheduling and tracked
   boxes (bench/edge_throughput.py; every ratio against a baseline measured in the same run).

Usage: python bench/edge.py [--seconds 20] [--cameras 1,3,6] [--sections 1,2,3,4,5,6,7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.servers import LocalRedis  # noqa: E402
from shared.frame_ring import FrameFetcher, FrameRingWriter, decode_jpeg, encode_jpeg  # noqa: E402
from shared.schemas import DetectionSet, FrameRef, Health  # noqa: E402
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus  # noqa: E402
from vision.detectors.registry import load_detector  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import edge_throughput  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 200)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def test_frame() -> np.ndarray:
    image = cv2.imread(str(REPO / "tests" / "data" / "kite.jpg"))
    return cv2.resize(image, (1920, 1080))


def bench_detector(iterations: int) -> None:
    frame = test_frame()
    table = Table(title="1. detector cost per 1080p frame (ms, median)", title_justify="left")
    for column in ("model", "provider", "session.run", "pre", "post", "pre+infer+post", "overhead / infer"):
        table.add_column(column, justify="right")
    for name in ("nanodet", "centernet"):
        detector = load_detector(name)
        for _ in range(5):
            detector.detect(frame)
        pre, infer, post, total = [], [], [], []
        for _ in range(iterations):
            detector.detect(frame)
            t = detector.last_timing
            pre.append(t.pre_ms)
            infer.append(t.infer_ms)
            post.append(t.post_ms)
            total.append(t.total_ms)
        p, i, o, a = (statistics.median(x) for x in (pre, infer, post, total))
        table.add_row(name, detector.providers[0].replace("ExecutionProvider", ""), f"{i:.1f}", f"{p:.1f}", f"{o:.1f}",
                      f"{a:.1f}", f"{(p + o) / i * 100:.0f}%")
    console.print(table)


def bench_hop(redis_url: str, iterations: int) -> None:
    bus = StreamBus(redis_url)
    frame = test_frame()
    ring = FrameRingWriter("hybridcam_bench_hop", 1920, 1080, slots=8)
    fetcher = FrameFetcher()
    results: dict[str, list[float]] = {"shared-memory reference, zero-copy view": [], "shared-memory reference, pixels copied": [], "inline JPEG (q85)": []}
    try:
        for label in results:
            inline, copy = label.startswith("inline"), label.endswith("copied")
            stream = f"bench:{label}"
            last_id = "$"
            for seq in range(iterations):
                received: list[float] = []

                def consume(after: str, stream: str = stream, inline: bool = inline, copy: bool = copy,
                            received: list[float] = received) -> None:
                    reply = bus.redis.xread({stream: after}, count=1, block=2000)
                    from shared.schemas import decode

                    ref = decode(reply[0][1][0][1][b"m"])
                    if inline:
                        pixels = decode_jpeg(ref.jpeg)
                    elif copy:
                        pixels = fetcher.fetch(ref)
                    else:
                        pixels = fetcher.borrow(ref).pixels
                    assert pixels.shape == frame.shape
                    received.append(time.perf_counter())

                consumer = threading.Thread(target=consume, args=(last_id,))
                consumer.start()
                time.sleep(0.002)
                if not inline:
                    # capture decodes or renders straight into the slot: that is capture's work,
                    # not the transport's, so the clock starts when the slot is committed.
                    slot, pixels = ring.begin()
                    np.copyto(pixels, frame)
                sent = time.perf_counter()
                if inline:
                    ref = FrameRef(camera_id="b", seq=seq, capture_ts=time.time(), width=1920, height=1080, jpeg=encode_jpeg(frame))
                else:
                    captured = time.time()
                    ring.commit(slot, seq, captured)
                    ref = FrameRef(camera_id="b", seq=seq, capture_ts=captured, width=1920, height=1080,
                                   shm_name=ring.name, slot=slot)
                last_id = bus.publish(stream, ref)
                consumer.join()
                results[label].append((received[0] - sent) * 1000)
    finally:
        fetcher.close()
        ring.close()
    table = Table(title="2. transport hop for one 1080p frame (ms): commit or encode + XADD -> XREAD + pixels in hand",
                  title_justify="left")
    for column in ("transport", "p50", "p99", "bytes on the stream"):
        table.add_column(column, justify="right")
    jpeg_bytes = len(encode_jpeg(frame))
    for label, values in results.items():
        size = "~120" if label.startswith("shared") else f"{jpeg_bytes:,}"
        table.add_row(label, f"{percentile(values, 50):.2f}", f"{percentile(values, 99):.2f}", size)
    console.print(table)


def captured_frames(bus: StreamBus) -> int:
    """Frames published so far, from the capture service's own health reports."""
    latest: dict[str, float] = {}
    for entry in bus.read_all(HEALTH_STREAM):
        health = entry.message
        if isinstance(health, Health) and health.service == "capture" and health.camera_id:
            latest[health.camera_id] = health.counters.get("frames", 0)
    return int(sum(latest.values()))


def bench_sustained(redis: LocalRedis, camera_counts: list[int], seconds: float) -> None:
    table = Table(title=f"3. sustained analysis, synthetic 1080p cameras at 15 fps, {seconds:.0f} s each "
                        "(automatic back-end, every camera's newest frame)",
                  title_justify="left")
    for column in ("cameras", "offered fps", "captured fps", "analysed fps", "analysed / offered", "latency p50 ms", "latency p95 ms"):
        table.add_column(column, justify="right")
    for count in camera_counts:
        redis.restart()
        bus = StreamBus(redis.url)
        bus.redis.flushall()
        with tempfile.TemporaryDirectory() as tmp:
            site = Path(tmp) / "site.yaml"
            demo = yaml.safe_load((REPO / "config" / "site.demo.yaml").read_text())
            demo["defaults"].update({"width": 1920, "height": 1080, "fps": 15})
            demo["cameras"] = demo["cameras"][:count]
            site.write_text(yaml.safe_dump(edge_throughput.unique_camera_ids(demo)))
            env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_LOG_LEVEL": "WARNING",
                   "HYBRIDCAM_EDGE_SCHEDULE": "every-camera"}
            procs = [
                subprocess.Popen([sys.executable, "-m", "hybridcam", cmd], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for cmd in ("capture", "edge-infer")
            ]
            time.sleep(6)  # model load and warm-up
            start_id = bus.redis.xinfo_stream(DETECTIONS_STREAM)["last-generated-id"] if bus.redis.exists(DETECTIONS_STREAM) else b"0-0"
            frames_before = captured_frames(bus)
            time.sleep(seconds)
            frames_after = captured_frames(bus)
            items = bus.redis.xrange(DETECTIONS_STREAM, min=f"({start_id.decode() if isinstance(start_id, bytes) else start_id}")
            for proc in procs:
                proc.terminate()
                proc.wait()
        from shared.schemas import decode

        sets = [m for _, fields in items if not (m := decode(fields[b"m"])).tracked]
        latencies = [s.latency_ms for s in sets if isinstance(s, DetectionSet)]
        analysed = len(sets) / seconds
        captured = (frames_after - frames_before) / seconds
        offered = 15 * count
        table.add_row(str(count), f"{offered}", f"{captured:.1f}", f"{analysed:.1f}", f"{analysed / offered:.0%}",
                      f"{percentile(latencies, 50):.0f}" if latencies else "-",
                      f"{percentile(latencies, 95):.0f}" if latencies else "-")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per camera count")
    parser.add_argument("--cameras", default="1,3,6", help="camera counts to measure")
    parser.add_argument("--iterations", type=int, default=100, help="frames for the detector and hop measurements")
    parser.add_argument("--sections", default="1,2,3,4,5,6,7", help="which tables to print")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of model-call timing (table 4)")
    args = parser.parse_args()
    sections = {int(s) for s in args.sections.split(",")}
    console.print(f"[bold]hybridcam edge benchmark[/] on {os.cpu_count()} CPU cores ({cpu_model()}), "
                  f"load average {os.getloadavg()[0]:.1f} at start")
    if 1 in sections:
        bench_detector(args.iterations)
    if sections & {2, 3}:
        with LocalRedis(appendonly=False) as redis:
            if 2 in sections:
                bench_hop(redis.url, args.iterations)
            if 3 in sections:
                bench_sustained(redis, [int(c) for c in args.cameras.split(",")], args.seconds)
    edge_throughput.run(sections, args.seconds, args.rounds, 2.0)
    console.print(f"load average {os.getloadavg()[0]:.1f} at the end")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
