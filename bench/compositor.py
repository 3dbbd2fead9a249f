"""Compositor benchmark: sustained program fps, CPU use and capture->program latency.

Runs the real services against a real redis-server: capture with N synthetic cameras
(default 6 at 1920x1080, 15 fps), edge-infer (NanoDet, newest frame per camera) and the
compositor writing a 1080p HLS program with the capture time stamped into every picture
as a binary code. Afterwards the HLS is decoded and each picture's code is read back:
latency = the picture's program time - the capture time of the frame it shows.

Runs once per layout (default: program, then both), so the multiview's cost reads as a ratio
to the program-only run of the same invocation. Every program picture's drawn boxes are
logged and compared with the synthetic ground truth of the frame they were drawn on.

    python bench/compositor.py [--seconds 30] [--cameras 6] [--fps 15] [--program-fps 15] [--layouts program,both] [--delay 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.servers import LocalRedis  # noqa: E402
from services.compositor.edit_decision_list import read_edl  # noqa: E402
from services.compositor.renderer import read_timecode  # noqa: E402

REGIONS = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75)]


def site_yaml(cameras: int, width: int, height: int, fps: float, prefix: str = "") -> str:
    """The bench site; ``prefix`` keeps its camera ids (and so its shared-memory ring names) apart from other stacks on the host."""
    lines = [
        "site: bench",
        f"defaults: {{width: {width}, height: {height}, fps: {fps}}}",
        "synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}",
        "cameras:",
        f"  - {{id: {prefix}wide, role: master, source: synthetic}}",
    ]
    for i, region in enumerate(REGIONS[: cameras - 1]):
        lines.append(f"  - {{id: {prefix}slave{i + 1}, source: synthetic, covers: {{master: {prefix}wide, region: {list(region)}}}}}")
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


def box_offsets(overlay_log: Path, site_file: Path) -> tuple[list[float], list[float]]:
    """Offset between each drawn box and its ground-truth person (centre distance / person height), for boxes
    from a detection of that very frame and for boxes interpolated from tracks."""
    from services.capture.scene_builder import build_scene
    from shared.site_config import load_site

    site = load_site(site_file)
    cameras = {c.id: c for c in site.resolved()}
    scene = build_scene(site, list(cameras.values()))
    detected: list[float] = []
    predicted: list[float] = []
    for line in overlay_log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        camera = cameras[entry["camera"]]
        truth = [p for p in scene.ground_truth(camera.id, entry["seq"] / camera.fps) if p.visible_fraction >= 0.5]  # type: ignore[attr-defined]
        sx = camera.width / entry["size"][0] if entry["size"][0] else 1.0
        sy = camera.height / entry["size"][1] if entry["size"][1] else 1.0
        for box in entry["boxes"]:
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            person = max(truth, key=lambda p: overlap(box, p.box), default=None)
            if person is None or overlap(box, person.box) <= 0.1:
                continue
            (bx, by), (gx, gy) = centre(box), centre(person.box)
            offset = ((bx - gx) ** 2 + (by - gy) ** 2) ** 0.5 / max(1.0, person.box[3] - person.box[1])
            (predicted if entry["predicted"] else detected).append(offset)
    return detected, predicted


def overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def probe(path: Path) -> str:
    reply = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,width,height,r_frame_rate:format=duration", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=60)
    if reply.returncode:
        return f"ffprobe failed: {reply.stderr.strip()[:200]}"
    data = json.loads(reply.stdout)
    stream = data["streams"][0]
    return (f"{stream['codec_name']} {stream['width']}x{stream['height']} {stream['r_frame_rate']} fps, "
            f"{float(data['format']['duration']):.1f} s")


def run_once(args: argparse.Namespace, work: Path, layout: str) -> dict:
    site = work / "site.yaml"
    site.write_text(site_yaml(args.cameras, args.width, args.height, args.fps, prefix=f"b{os.getpid()}-"))
    out = work / f"program-{layout}"
    with LocalRedis(appendonly=False) as redis:
        env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_COMPOSITOR_FPS": str(args.program_fps),
               "HYBRIDCAM_COMPOSITOR_OUTPUTS": "hls", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(out), "HYBRIDCAM_COMPOSITOR_HLS_LIST_SIZE": "0",
               "HYBRIDCAM_COMPOSITOR_TIMECODE": "true", "HYBRIDCAM_CAPTURE_RING_SLOTS": str(args.ring_slots),
               "HYBRIDCAM_COMPOSITOR_LAYOUT": layout, "HYBRIDCAM_COMPOSITOR_PROGRAM_DELAY_S": str(args.delay),
               "HYBRIDCAM_COMPOSITOR_OVERLAY_LOG": str(work / f"overlay-{layout}.jsonl")}
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
        raise SystemExit(1)
    pictures, seconds, fps, cuts, skipped, lost = ended.groups()
    result = {"layout": layout, "pictures": int(pictures), "seconds": float(seconds), "fps": float(fps), "cuts": int(cuts),
              "skipped": int(skipped), "lost": int(lost), "cpu": {n: (float(np.mean(v)), float(np.max(v))) for n, v in sampler.samples.items() if v},
              "out": out, "logs": logs}
    if layout != "multiview":
        edl = read_edl(out / "edit-decision-list.jsonl")
        result["latency"] = np.array(latencies_from_hls(out / "hls" / "program.m3u8", edl[0]["time"]))
    result["offsets"] = box_offsets(work / f"overlay-{layout}.jsonl", site)
    return result


def tick_costs(cameras: int, width: int, height: int, rounds: int = 3, ticks: int = 20) -> dict[str, float]:
    """In-process cost of one program tick (fetch copy, render, encode) per layout, alternating the layouts so both see the
    same machine load: a steadier figure than live fps on a shared machine."""
    from services.capture.synthetic_scene import SyntheticScene
    from services.compositor.encoder import H264Encoder
    from services.compositor.multiview import MultiviewRenderer
    from services.compositor.renderer import ProgramRenderer, RenderOptions, ShotPicture

    scene = SyntheticScene.default_site(num_cameras=cameras, width=width, height=height, scenario="walkthrough")
    ids = list(scene.cameras)
    sources = {c: scene.render(c, 5.0) for c in ids}
    frames = {c: np.empty_like(f) for c, f in sources.items()}
    shown = ids[1] if len(ids) > 1 else ids[0]
    program, multiview = ProgramRenderer(1920, 1080, RenderOptions()), MultiviewRenderer(1920, 1080, ids, "wide")
    encoders = {"program": H264Encoder(1920, 1080, 15), "multiview": H264Encoder(1920, 1080, 15)}
    best: dict[str, float] = {"program": float("inf"), "both": float("inf")}
    pool = ThreadPoolExecutor(max_workers=1)

    def multiview_tick(canvas: np.ndarray, pts: int) -> None:
        for camera in ids:  # reuses the program's copies, resizes the others straight from the ring
            multiview.place(camera, frames[camera] if camera in (shown, "wide") else sources[camera])
        if "program" in multiview.cells:
            multiview.place("program", canvas)
        encoders["multiview"].encode(multiview.finish(shown), pts)

    pts = 0
    for _ in range(rounds):
        for layout in ("program", "both"):
            started = time.perf_counter()
            for _ in range(ticks):
                pts += 1
                for camera in (shown, "wide"):
                    np.copyto(frames[camera], sources[camera])  # the program copies what it shows out of the ring
                canvas = program.compose(ShotPicture(frames[shown], shown, pip_frame=frames["wide"]), 0.0)
                beside = None
                if layout == "both":  # built and encoded beside the program's encode, as the live program does
                    beside = pool.submit(multiview_tick, canvas, pts)
                encoders["program"].encode(canvas, pts)
                if beside is not None:
                    beside.result()
            best[layout] = min(best[layout], (time.perf_counter() - started) / ticks)
    pool.shutdown()
    for encoder in encoders.values():
        encoder.close()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cameras", type=int, default=6, choices=range(1, 7))
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=15.0, help="capture fps per camera")
    parser.add_argument("--program-fps", type=float, default=15.0)
    parser.add_argument("--layouts", default="program,both", help="layouts to run one after the other; the first is the baseline")
    parser.add_argument("--delay", type=float, default=0.4, help="program delay behind capture, seconds")
    parser.add_argument("--ring-slots", type=int, default=16, help="frames per camera ring (must cover the delay)")
    parser.add_argument("--no-edge", action="store_true", help="leave edge detection out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hybridcam-bench-"))
    results = [run_once(args, work, layout.strip()) for layout in args.layouts.split(",") if layout.strip()]
    print(f"machine: {os.cpu_count()} cores; {args.cameras} synthetic cameras {args.width}x{args.height}@{args.fps:g}, "
          f"program {args.program_fps:g} fps 1920x1080, edge detection {'off' if args.no_edge else 'on'}, "
          f"program {args.delay:g} s behind capture")
    costs = tick_costs(args.cameras, args.width, args.height)
    print(f"tick cost in process (frames out of the ring, render, encode; best of 3 alternating rounds): program {costs['program'] * 1000:.0f} ms, "
          f"both {costs['both'] * 1000:.0f} ms = {costs['both'] / costs['program']:.2f} x; at {args.program_fps:g} fps a tick may take "
          f"{1000 / args.program_fps:.0f} ms")
    baseline = results[0]
    for result in results:
        ratio = result["fps"] / baseline["fps"] if baseline["fps"] else 0.0
        print(f"layout {result['layout']:<9}: {result['pictures']} pictures in {result['seconds']:.1f} s = {result['fps']:.1f} fps sustained "
              f"(target {args.program_fps:g}; {ratio:.2f} x the {baseline['layout']} run); {result['skipped']} ticks skipped, "
              f"{result['lost']} frames lost from the ring, {result['cuts']} cuts")
        for name, (mean, peak) in result["cpu"].items():
            print(f"  cpu {name:<11} mean {mean:5.0f} %  max {peak:5.0f} %  (100 % = one core)")
        analysed = re.search(r"(\d+) frames analysed", result["logs"].get("edge-infer", ""))
        if analysed:
            print(f"  edge-infer: {analysed.group(1)} frames analysed in ~{args.seconds + 3:.0f} s "
                  f"({int(analysed.group(1)) / (args.seconds + 3) / args.cameras:.1f} fps per camera)")
        latency = result.get("latency")
        if latency is not None and latency.size:
            print(f"  capture->program latency: p50 {np.percentile(latency, 50) * 1000:.0f} ms, p95 {np.percentile(latency, 95) * 1000:.0f} ms "
                  f"({latency.size} pictures)")
        detected, predicted = result["offsets"]
        both = detected + predicted
        if both:
            print(f"  box-to-person offset (share of the person's height, synthetic ground truth, delay {args.delay:g} s): "
                  f"median {np.median(both):.1%} over {len(both)} boxes; detected on that frame {np.median(detected) if detected else float('nan'):.1%} "
                  f"({len(detected)}), interpolated from tracks {np.median(predicted) if predicted else float('nan'):.1%} ({len(predicted)})")
        for kind in ("", "multiview/"):
            playlist = result["out"] / kind / "hls" / "program.m3u8"
            if playlist.exists():
                print(f"  ffprobe {kind or 'program/'}hls: {probe(playlist)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
