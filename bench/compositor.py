"""Compositor benchmark: sustained program fps, CPU use and capture->program latency.

Runs the real services against a real redis-server: capture with N synthetic cameras
(default 6 at 1920x1080, 15 fps), edge-infer (NanoDet, newest frame per camera) and the
compositor writing a 1080p HLS program with the capture time stamped into every picture
as a binary code. Afterwards the HLS is decoded and each picture's code is read back:
latency = the picture's program time - the capture time of the frame it shows.

    python bench/compositor.py [--seconds 30] [--cameras 6] [--fps 15] [--program-fps 15]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.servers import LocalRedis  # noqa: E402
from services.compositor.edit_decision_list import read_edl  # noqa: E402
from services.compositor.renderer import read_timecode  # noqa: E402

REGIONS = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75)]


def site_yaml(cameras: int, width: int, height: int, fps: float) -> str:
    lines = [
        "site: bench",
        f"defaults: {{width: {width}, height: {height}, fps: {fps}}}",
        "synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}",
        "cameras:",
        "  - {id: wide, role: master, source: synthetic}",
    ]
    for i, region in enumerate(REGIONS[: cameras - 1]):
        lines.append(f"  - {{id: slave{i + 1}, source: synthetic, covers: {{master: wide, region: {list(region)}}}}}")
    return "\n".join(lines) + "\n"


class CpuSampler(threading.Thread):
    def __init__(self, processes: dict[str, subprocess.Popen]) -> None:
        super().__init__(daemon=True)
        self.handles = {name: psutil.Process(p.pid) for name, p in processes.items()}
        self.samples: dict[str, list[float]] = {name: [] for name in processes}
        self.stop = threading.Event()

    def run(self) -> None:
        for handle in self.handles.values():
            handle.cpu_percent(None)
        while not self.stop.wait(1.0):
            for name, handle in self.handles.items():
                try:
                    self.samples[name].append(handle.cpu_percent(None))
                except psutil.Error:
                    pass


def latencies_from_hls(playlist: Path, program_start: float) -> list[float]:
    values = []
    with av.open(str(playlist)) as container:
        stream = container.streams.video[0]
        first_pts = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            first_pts = frame.pts if first_pts is None else first_pts
            luma = frame.to_ndarray(format="gray")
            captured = read_timecode(luma)
            if captured < 1e9:  # no frame shown yet
                continue
            shown = program_start + float((frame.pts - first_pts) * stream.time_base)
            values.append(shown - captured)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cameras", type=int, default=6, choices=range(1, 7))
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=15.0, help="capture fps per camera")
    parser.add_argument("--program-fps", type=float, default=15.0)
    parser.add_argument("--no-edge", action="store_true", help="leave edge detection out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hybridcam-bench-"))
    site = work / "site.yaml"
    site.write_text(site_yaml(args.cameras, args.width, args.height, args.fps))
    out = work / "program"
    with LocalRedis(appendonly=False) as redis:
        env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_COMPOSITOR_FPS": str(args.program_fps),
               "HYBRIDCAM_COMPOSITOR_OUTPUTS": "hls", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(out), "HYBRIDCAM_COMPOSITOR_HLS_LIST_SIZE": "0",
               "HYBRIDCAM_COMPOSITOR_TIMECODE": "true", "HYBRIDCAM_CAPTURE_RING_SLOTS": "8"}
        run = lambda *a: subprocess.Popen([sys.executable, "-m", "hybridcam", *a], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: E731
        processes = {"capture": run("capture", "--duration", str(args.seconds + 4))}
        if not args.no_edge:
            processes["edge-infer"] = run("edge-infer", "--duration", str(args.seconds + 3))
        time.sleep(2.0)
        processes["compositor"] = run("compositor", "--duration", str(args.seconds))
        sampler = CpuSampler(processes)
        sampler.start()
        logs = {name: process.communicate(timeout=args.seconds + 120)[0] for name, process in processes.items()}
        sampler.stop.set()

    ended = re.search(r"program ended: (\d+) pictures in ([\d.]+) s \(([\d.]+) fps\), (\d+) cuts, (\d+) ticks skipped, (\d+) frames lost", logs["compositor"])
    if ended is None:
        print(logs["compositor"][-3000:])
        return 1
    pictures, seconds, fps, cuts, skipped, lost = ended.groups()
    edl = read_edl(out / "edit-decision-list.jsonl")
    latency = np.array(latencies_from_hls(out / "hls" / "program.m3u8", edl[0]["time"]))
    print(f"machine: {os.cpu_count()} cores; {args.cameras} synthetic cameras {args.width}x{args.height}@{args.fps:g}, "
          f"program {args.program_fps:g} fps 1920x1080, edge detection {'off' if args.no_edge else 'on'}")
    print(f"program: {pictures} pictures in {seconds} s = {fps} fps sustained (target {args.program_fps:g}); "
          f"{skipped} ticks skipped, {lost} frames lost from the ring, {cuts} cuts")
    for name, samples in sampler.samples.items():
        if samples:
            print(f"cpu {name:<11} mean {np.mean(samples):5.0f} %  max {np.max(samples):5.0f} %  (100 % = one core)")
    analysed = re.search(r"(\d+) frames analysed", logs.get("edge-infer", ""))
    if analysed:
        print(f"edge-infer: {analysed.group(1)} frames analysed in ~{args.seconds + 3:.0f} s "
              f"({int(analysed.group(1)) / (args.seconds + 3) / args.cameras:.1f} fps per camera)")
    if latency.size:
        print(f"capture->program latency: p50 {np.percentile(latency, 50) * 1000:.0f} ms, p95 {np.percentile(latency, 95) * 1000:.0f} ms "
              f"({latency.size} pictures)")
    else:
        print("capture->program latency: no stamped pictures decoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
