"""Real-rate benchmark: real footage over RTSP, 1-6 cameras at 15, 25, 30 and 60 fps, 720p and 1080p.

Each row runs the real services as processes against a real redis-server, the moto server as AWS and the
project's RTSP server (GStreamer's; ``devstack/rtsp_server.py``): capture from N RTSP cameras streaming the
real 60 fps road clip (``tests/data/rtsp/road-60fps.mp4``, resampled to the row's rate and scaled to its
size: the clip is 320x240, so at 720p/1080p the pixel rate and the decode load are real, the detail is the
clip's), edge-infer with its default settings, the sampler (adaptive policy, to a Kinesis stream on moto)
and the compositor (default program delay and ring, with its overlay log on). After a warm-up it measures:

- capture fps (all cameras) and the share of the offered frames;
- analysed fps: detection sets the edge made from a detector run (not carried by the tracker), and their share;
- sampler coverage: master frames the sampler evaluated / master frames captured;
- program fps and capture->program latency p50/p95 (program time - capture time of the frame on air);
- overlay precision/recall at IoU 0.5: the boxes the program drew (the compositor's overlay log) against a
  reference detector (NanoDet FP32, onnxruntime CPU, score >= 0.35) run offline on the very file frame whose
  pixels were on air; and the same for the edge's own detection sets, the ceiling. Every RTSP client gets
  the mount's frames in order from the first (no loss over TCP), so capture's frame n is file frame n mod length.

Ratios are to the 15 fps row of the same camera count and size in the same run.

Usage: python bench/real_rates.py [--quick] [--cameras 1,3,6] [--fps 15,25,30,60] [--sizes 720p,1080p]
                                  [--seconds 20] [--warmup-timeout 90]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.rtsp_footage import ROAD_60FPS, footage_variant  # noqa: E402
from devstack.rtsp_server import LocalRtspServer, RtspMount  # noqa: E402
from devstack.servers import LocalMoto, LocalRedis  # noqa: E402
from shared.schemas import DetectionSet, Health  # noqa: E402
from shared.stream_bus import DETECTIONS_STREAM, HEALTH_STREAM, StreamBus  # noqa: E402
from shared.tracker import iou  # noqa: E402
from vision.detectors.registry import load_detector  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 240)
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
LABELS = ("person", "bicycle", "car", "motorcycle", "bus", "truck")  # what the road clip shows; drawn by the compositor
REFERENCE_MIN_SCORE = 0.35
FOOTAGE_CACHE = REPO / "runs" / "real_rates" / "footage"

Box = tuple[float, float, float, float]


@dataclass
class Window:
    """Counters at the start and the end of the measuring window, from the services' own health reports."""

    started: float
    ended: float = 0.0
    first: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    last: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    def delta(self, service: str, key: str, instance: str | None = None) -> float:
        total = 0.0
        for (svc, inst), counters in self.last.items():
            if svc == service and (instance is None or inst == instance):
                total += counters.get(key, 0.0) - self.first.get((svc, inst), {}).get(key, 0.0)
        return total

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Row:
    cameras: int
    fps: int
    size: str
    capture_fps: float = 0.0
    analysed_fps: float = 0.0
    sampler_coverage: float | None = None
    program_fps: float = 0.0
    latency_ms: tuple[float, float] | None = None
    overlay: tuple[float, float, int] | None = None  # precision, recall, pictures scored
    edge: tuple[float, float, int] | None = None
    lapped_pictures: float | None = None  # share of program pictures whose pixels are not the frame of their boxes
    reconnects: float = 0.0
    note: str = ""
    window: tuple[float, float] | None = None  # the measuring window, wall-clock seconds
    load: float | None = None  # the machine's 1-minute load average at the end of the window (others' work included)


def latest_counters(bus: StreamBus) -> dict[tuple[str, str], dict[str, float]]:
    latest: dict[tuple[str, str], dict[str, float]] = {}
    for entry in bus.read_all(HEALTH_STREAM):
        health = entry.message
        if isinstance(health, Health):
            latest[(health.service, health.camera_id or health.instance)] = dict(health.counters)
    return latest


def site_file(path: Path, url: str, cameras: int, width: int, height: int, fps: int) -> Path:
    entries = [{"id": f"cam{i + 1}", "role": "master" if i == 0 else "slave", "source": url,
                **({} if i == 0 else {"covers": {"master": "cam1", "region": [0.0, 0.0, 1.0, 1.0]}})} for i in range(cameras)]
    path.write_text(yaml.safe_dump({"site": "real-rates", "defaults": {"width": width, "height": height, "fps": fps},
                                    "cameras": entries}))
    return path


def wait_ready(bus: StreamBus, processes: dict[str, subprocess.Popen], timeout_s: float) -> str:
    """Until the compositor puts pictures out and the edge has made detections; '' or why not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [name for name, p in processes.items() if p.poll() is not None]
        if dead:
            return f"{', '.join(dead)} exited"
        counters = latest_counters(bus)
        pictures = sum(c.get("pictures", 0) for (svc, _), c in counters.items() if svc == "compositor")
        if pictures > 0 and bus.redis.exists(DETECTIONS_STREAM) and bus.redis.xlen(DETECTIONS_STREAM) > 5:
            return ""
        time.sleep(1.0)
    return f"not ready within {timeout_s:.0f} s"


def run_row(row: Row, args: argparse.Namespace, moto: LocalMoto, work: Path) -> tuple[Row, list[dict], list[DetectionSet], Path]:
    width, height = SIZES[row.size]
    footage = footage_variant(ROAD_60FPS, FOOTAGE_CACHE, width, height, row.fps, "h264")
    folder = work / f"{row.cameras}x{row.size}{row.fps}"
    folder.mkdir(parents=True)
    overlay_log = folder / "overlay.jsonl"
    server = LocalRtspServer([RtspMount("road", "h264", (footage,))], log_path=folder / "rtsp-server.log").start()
    redis = LocalRedis(data_dir=folder / "redis", appendonly=False)
    redis.data_dir.mkdir()
    redis.start()
    import boto3

    stream = f"real-rates-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_stream(StreamName=stream, ShardCount=1)
    env = {**os.environ, **moto.environment(), "HYBRIDCAM_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_SITE_FILE": str(site_file(folder / "site.yaml", server.url("road"), row.cameras, width, height, row.fps)),
           "HYBRIDCAM_LOG_LEVEL": "WARNING", "HYBRIDCAM_COMPOSITOR_OVERLAY_LOG": str(overlay_log),
           "HYBRIDCAM_COMPOSITOR_LABELS": ",".join(LABELS), "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(folder / "program"),
           "HYBRIDCAM_SAMPLER_STREAM_NAME": stream, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(folder / "spool"),
           "HYBRIDCAM_CAPTURE_HEALTH_INTERVAL_S": "1", "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "1"}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in ("capture", "edge-infer", "sampler", "compositor"):
            log = (folder / f"{name}.log").open("wb")
            processes[name] = subprocess.Popen([sys.executable, "-m", "hybridcam", name], env=env, cwd=REPO,
                                               stdout=log, stderr=subprocess.STDOUT)
        bus = StreamBus(redis.url)
        why = wait_ready(bus, processes, args.warmup_timeout)
        if why:
            row.note = why
            return row, [], [], footage
        time.sleep(3.0)  # past the burst of frames an RTSP client gets when it joins
        window = Window(time.time(), first=latest_counters(bus))
        first_id = bus.redis.xinfo_stream(DETECTIONS_STREAM)["last-generated-id"]
        time.sleep(args.seconds)
        window.ended, window.last = time.time(), latest_counters(bus)
        row.load = os.getloadavg()[0]
        items = bus.redis.xrange(DETECTIONS_STREAM, min=f"({first_id.decode() if isinstance(first_id, bytes) else first_id}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()
        redis.stop()
    from shared.schemas import decode

    sets = [m for _, fields in items if isinstance(m := decode(fields[b"m"]), DetectionSet) and m.source == "edge"]
    sets = [s for s in sets if window.started <= s.capture_ts <= window.ended]
    pictures = [json.loads(line) for line in overlay_log.read_text(encoding="utf-8").splitlines()] if overlay_log.exists() else []
    pictures = [p for p in pictures if window.started <= p["now"] <= window.ended]
    fill_counters(row, window, sets, pictures)
    (folder / "detections.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in sets))
    return row, pictures, sets, footage


def fill_counters(row: Row, window: Window, sets: list[DetectionSet], pictures: list[dict]) -> None:
    seconds = max(window.seconds, 1e-6)
    row.capture_fps = window.delta("capture", "frames") / seconds
    row.reconnects = window.delta("capture", "reconnects")
    row.analysed_fps = sum(1 for s in sets if not s.tracked) / seconds
    master_frames = window.delta("capture", "frames", "cam1")
    evaluated = window.delta("sampler", "frames_evaluated")  # counted by the sampler since its deliberate decimation
    if not any("frames_evaluated" in counters for (svc, _), counters in window.last.items() if svc == "sampler"):
        evaluated = window.delta("sampler", "frames_seen") - window.delta("sampler", "skipped_gone")  # older samplers
    row.sampler_coverage = evaluated / master_frames if master_frames else None
    row.program_fps = window.delta("compositor", "pictures") / seconds
    row.window = (window.started, window.ended)
    measure_pictures(row, pictures)


def measure_pictures(row: Row, pictures: list[dict]) -> None:
    """Latency, and the share of pictures whose pixels are not the frame their boxes belong to (an older frame, or
    none at all: every frame the program wanted was lapped before it read it)."""
    latencies = [(p["now"] - p["capture_ts"]) * 1000 for p in pictures if p.get("capture_ts")]
    if latencies:
        row.latency_ms = (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)))
    if pictures:
        row.lapped_pictures = sum(1 for p in pictures if on_air(p) != p["seq"]) / len(pictures)


def on_air(picture: dict) -> int | None:
    """The seq of the frame whose pixels the picture showed; None when no frame of the camera was on air
    (the overlay log writes -1, or null in its first version)."""
    seq = picture.get("pixels_seq")
    return seq if seq is not None and seq >= 0 else None


class Reference:
    """NanoDet FP32 on the footage's own frames, decoded from the file, cached per file and frame."""

    def __init__(self) -> None:
        self.detector = load_detector("nanodet", intra_op_num_threads=2)
        self.boxes: dict[tuple[Path, int], list[Box]] = {}
        self.lengths: dict[Path, int] = {}

    def length(self, footage: Path) -> int:
        if footage not in self.lengths:
            capture = cv2.VideoCapture(str(footage))
            count = 0
            while capture.grab():
                count += 1
            capture.release()
            self.lengths[footage] = count
        return self.lengths[footage]

    def prepare(self, footage: Path, indices: set[int]) -> None:
        wanted = {i for i in indices if (footage, i) not in self.boxes}
        if not wanted:
            return
        capture = cv2.VideoCapture(str(footage))
        index = 0
        while wanted and index <= max(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                found = self.detector.detect(frame)
                labels = found.labels(self.detector.labels)
                self.boxes[(footage, index)] = [tuple(float(v) for v in box) for box, label, score  # type: ignore[misc]
                                                in zip(found.boxes, labels, found.scores) if label in LABELS and score >= REFERENCE_MIN_SCORE]
                wanted.discard(index)
            index += 1
        capture.release()

    def of(self, footage: Path, seq: int) -> list[Box]:
        return self.boxes.get((footage, seq % self.length(footage)), [])


def matches(drawn: list[Box], reference: list[Box]) -> int:
    """Greedy one-to-one matching at IoU >= 0.5, best pairs first."""
    pairs = sorted(((iou(d, r), i, j) for i, d in enumerate(drawn) for j, r in enumerate(reference)), reverse=True)
    used_d, used_r, count = set(), set(), 0
    for value, i, j in pairs:
        if value < 0.5:
            break
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
            count += 1
    return count


def in_crop(box: Box, crop: list[float] | None, width: int, height: int) -> bool:
    if not crop:
        return True
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    return crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]


def score(pairs: list[tuple[list[Box], list[Box]]]) -> tuple[float, float, int]:
    drawn = sum(len(d) for d, _ in pairs)
    truth = sum(len(r) for _, r in pairs)
    hits = sum(matches(d, r) for d, r in pairs)
    return (hits / drawn if drawn else float("nan")), (hits / truth if truth else float("nan")), len(pairs)  # nan: none drawn / none there


def score_row(row: Row, pictures: list[dict], sets: list[DetectionSet], footage: Path, reference: Reference) -> None:
    width, height = SIZES[row.size]
    length = reference.length(footage)
    analysed = [s for s in sets if not s.tracked]
    reference.prepare(footage, {(p["seq"] if on_air(p) is None else p["pixels_seq"]) % length for p in pictures}
                      | {s.seq % length for s in analysed})
    overlay_pairs = []
    for picture in pictures:
        sx = width / picture["size"][0] if picture["size"][0] else 1.0
        sy = height / picture["size"][1] if picture["size"][1] else 1.0
        drawn = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in picture["boxes"]]
        if on_air(picture) is None:
            # no frame of this camera on air (every one it wanted was lapped): its boxes sit on nothing, and the
            # objects of the frame they belong to are not shown boxed
            overlay_pairs.append((drawn, []))
            overlay_pairs.append(([], reference.of(footage, picture["seq"])))
            continue
        truth = reference.of(footage, picture["pixels_seq"])
        overlay_pairs.append(([b for b in drawn if in_crop(b, picture["crop"], width, height)],
                              [b for b in truth if in_crop(b, picture["crop"], width, height)]))
    if overlay_pairs:
        precision, recall, _ = score(overlay_pairs)
        row.overlay = (precision, recall, len(pictures))
    edge_pairs = [([d.box for d in s.detections if d.label in LABELS], reference.of(footage, s.seq)) for s in analysed]
    if edge_pairs:
        row.edge = score(edge_pairs)


def markdown(rows: list[Row]) -> str:
    """The figures as a Markdown table (docs/benchmarks.md)."""
    lines = ["| cameras | size | fps | capture fps | analysed fps (share, x15) | sampler coverage | program fps | latency p50/p95 ms "
             "| overlay P/R | edge P/R | overlay/edge P/R | boxes on other pixels | load |", "|" + "---|" * 13]
    baseline = {(r.cameras, r.size): r for r in rows if r.fps == 15}
    for r in rows:
        base = baseline.get((r.cameras, r.size))
        x15 = f", {r.analysed_fps / base.analysed_fps:.2f}x" if base and base.analysed_fps and r is not base else ""
        ratio = f"{r.overlay[0] / r.edge[0]:.2f} / {r.overlay[1] / r.edge[1]:.2f}" if r.overlay and r.edge and r.edge[0] and r.edge[1] else "-"
        cells = [str(r.cameras), r.size, str(r.fps), f"{r.capture_fps:.1f} ({r.capture_fps / (r.cameras * r.fps):.0%})",
                 f"{r.analysed_fps:.1f} ({r.analysed_fps / max(r.capture_fps, 1e-6):.0%}{x15})",
                 f"{r.sampler_coverage:.0%}" if r.sampler_coverage is not None else "-", f"{r.program_fps:.1f}",
                 f"{r.latency_ms[0]:.0f} / {r.latency_ms[1]:.0f}" if r.latency_ms else "-",
                 f"{r.overlay[0]:.2f} / {r.overlay[1]:.2f}" if r.overlay else "-", f"{r.edge[0]:.2f} / {r.edge[1]:.2f}" if r.edge else "-",
                 ratio, f"{r.lapped_pictures:.0%}" if r.lapped_pictures is not None else "-", f"{r.load:.0f}" if r.load is not None else "-"]
        lines.append(("| " + " | ".join(cells) + " |").replace("nan", "n/a") + (f" {r.note}" if r.note else ""))
    return "\n".join(lines)


def table(rows: list[Row]) -> Table:
    out = Table(title="real rates: real footage over RTSP, default settings (ratios to the 15 fps row of the same cameras and size)",
                title_justify="left")
    for column in ("cameras", "size", "fps", "capture fps (share)", "analysed fps (share)", "x15", "sampler coverage",
                   "program fps", "latency p50/p95 ms", "overlay P/R", "edge P/R (ceiling)", "overlay/edge", "x15 overlay R",
                   "boxes on other pixels", "reconnects", "load", "note"):
        out.add_column(column, justify="right")
    baseline = {(r.cameras, r.size): r for r in rows if r.fps == 15}
    for r in rows:
        offered = r.cameras * r.fps
        base = baseline.get((r.cameras, r.size))
        share = f"{r.analysed_fps:.1f} ({r.analysed_fps / max(r.capture_fps, 1e-6):.0%})"
        x15 = f"{r.analysed_fps / base.analysed_fps:.2f}" if base and base.analysed_fps else "-"
        ratio = "-"
        if r.overlay and r.edge and r.edge[0] and r.edge[1]:
            ratio = f"{r.overlay[0] / r.edge[0]:.2f} / {r.overlay[1] / r.edge[1]:.2f}"
        x15_overlay = f"{r.overlay[1] / base.overlay[1]:.2f}" if r.overlay and base and base.overlay and base.overlay[1] else "-"
        out.add_row(*(cell.replace("nan", "n/a") for cell in (
            str(r.cameras), r.size, str(r.fps), f"{r.capture_fps:.1f} ({r.capture_fps / offered:.0%})", share, x15,
            f"{r.sampler_coverage:.1%}" if r.sampler_coverage is not None else "-", f"{r.program_fps:.1f}",
            f"{r.latency_ms[0]:.0f} / {r.latency_ms[1]:.0f}" if r.latency_ms else "-",
            f"{r.overlay[0]:.2f} / {r.overlay[1]:.2f}" if r.overlay else "-",
            f"{r.edge[0]:.2f} / {r.edge[1]:.2f}" if r.edge else "-", ratio, x15_overlay,
            f"{r.lapped_pictures:.0%}" if r.lapped_pictures is not None else "-", f"{r.reconnects:.0f}",
            f"{r.load:.0f}" if r.load is not None else "-", r.note,
        )))
    return out


def rescore(results: Path, work: Path) -> int:
    """Overlay and edge scores again from the kept overlay logs and detection sets; counters as measured."""
    reference = Reference()
    rows = []
    for saved in json.loads(results.read_text()):
        row = Row(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
        folder = work / f"{row.cameras}x{row.size}{row.fps}"
        overlay_log = folder / "overlay.jsonl"
        sets = [DetectionSet.model_validate_json(line) for line in (folder / "detections.jsonl").read_text().splitlines()] \
            if (folder / "detections.jsonl").exists() else []
        start, end = row.window or ((min(s.capture_ts for s in sets), max(s.capture_ts for s in sets)) if sets else (0.0, 0.0))
        pictures = [json.loads(line) for line in overlay_log.read_text(encoding="utf-8").splitlines()] if overlay_log.exists() else []
        pictures = [p for p in pictures if start <= p["now"] <= end]
        measure_pictures(row, pictures)
        width, height = SIZES[row.size]
        score_row(row, pictures, sets, footage_variant(ROAD_60FPS, FOOTAGE_CACHE, width, height, row.fps, "h264"), reference)
        rows.append(row)
    console.print(table(rows))
    print(markdown(rows))
    results.with_suffix(".rescored.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 camera at 720p, 15/25/30/60 fps, 15 s each (about 4 minutes)")
    parser.add_argument("--cameras", default="1,3,6", help="camera counts (default 1,3,6)")
    parser.add_argument("--fps", default="15,25,30,60", help="camera rates (default 15,25,30,60; include 15 for the ratios)")
    parser.add_argument("--sizes", default="720p,1080p", help="720p and/or 1080p")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per row (default 20)")
    parser.add_argument("--warmup-timeout", type=float, default=90.0, help="longest wait for the services to be running")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    parser.add_argument("--work-dir", type=Path, help="keep each row's logs, site, overlay log and detections here (default: a temporary folder)")
    parser.add_argument("--rescore", type=Path, help="score again the rows of this --json file from their --work-dir (no services run)")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args.rescore, args.work_dir or args.rescore.parent / "work")
    if args.quick:
        args.cameras, args.sizes, args.seconds = "1", "720p", min(args.seconds, 15.0)
    grid = [Row(int(c), int(f), s) for c in args.cameras.split(",") for s in args.sizes.split(",") for f in args.fps.split(",")]
    unknown = sorted({r.size for r in grid} - set(SIZES))
    if unknown:
        parser.error(f"unknown size {', '.join(unknown)} (720p, 1080p)")
    console.print(f"{len(grid)} rows, {args.seconds:.0f} s each; CPU: {os.cpu_count()} cores; footage {ROAD_60FPS.name} "
                  f"(320x240, real 60 fps) scaled and resampled per row")
    reference = Reference()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="real-rates-") as tmp:
        work = args.work_dir or Path(tmp)
        moto = LocalMoto(log_path=work / "moto.log").start()
        try:
            for row in grid:
                console.print(f"[dim]{row.cameras} x {row.size} {row.fps} fps ...[/]")
                row, pictures, sets, footage = run_row(row, args, moto, work)
                score_row(row, pictures, sets, footage, reference)
                rows.append(row)
                console.print(table(rows[-1:]))
                if args.json:  # after every row: a long grid cut short keeps what it measured
                    args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        finally:
            moto.stop()
    console.print(table(rows))
    print(markdown(rows))
    complete = [r for r in rows if not r.note]
    if complete:
        console.print(f"median analysed share {statistics.median(r.analysed_fps / max(r.capture_fps, 1e-6) for r in complete):.0%} "
                      f"over {len(complete)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
