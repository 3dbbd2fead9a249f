"""Thin-uplink benchmark (LiveNAS): what super-resolution trained online buys on real footage.

For each real clip, played at its own frame rate in capture time:
1. the first 60 % is the live part: the edge's patch sampler (services/sampler/patch_sampler.py)
   chooses patches at --patches-per-s from every frame it is due on, and every --round-s seconds of
   capture the cloud's online trainer (cloud/super_resolution/trainer.py) runs a round of
   --steps-per-round steps and exports its network; after each round the processor upscales the
   held-back frames (the last 40 %, never seen by the trainer), and the PSNR and SSIM of
   super-resolution and of bicubic upscaling against the original are printed: the curve over time.
2. on the held-back frames, the cloud-tier detector (CenterNet + NanoDet tiles, the local model
   server's) runs on the original frames (the reference), on the bicubic upscale and on the
   super-resolved frames: box recall and precision at IoU 0.5 against the reference (objects of the
   watched labels, score >= 0.5), for each.
3. uplink bytes: the shrunk, compressed frames (plus the patches) against the frames at full size and
   quality (JPEG 85), per second of video.
4. the patch sampler's CPU as a ratio to the sampler alone: the sampler's per-frame work (change
   features on every master frame, 6 cameras x 25 fps of 1080p) against choosing patches at
   --patches-per-s, both timed on one core in the same run.

The chart (--chart) plots the gain over bicubic against patches seen, one line per clip.

Usage: python bench/superres.py [--data ../shared/data/video] [--factor 2] [--quality 30]
       [--chart docs/images/uplink-superres.png]   (about 10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.super_resolution.trainer import OnlineTrainer  # noqa: E402
from services.sampler.patch_sampler import PatchSampler, encode_patch  # noqa: E402
from shared.frame_ring import encode_jpeg  # noqa: E402
from shared.scene_change import SceneChangeDetector  # noqa: E402
from shared.uplink import UplinkQuality, degrade, psnr, ssim, upscale_bicubic  # noqa: E402
from vision.super_resolution import SuperResolution  # noqa: E402

CLIPS = ("one-by-one-person-detection.mp4", "car-detection.mp4", "store-aisle-detection.gif", "road-60fps.mp4")
FALLBACK = REPO / "tests" / "data" / "video"
WATCH = {"person", "car", "truck", "bus", "motorcycle", "bicycle"}
HELD_BACK_FRAMES = 12
DETECTION_FRAMES = 40


@dataclass
class ClipResult:
    name: str
    fps: float
    size: tuple[int, int]
    curve: list[tuple[float, int, float, float, float, float]] = field(default_factory=list)
    """(capture s, patches seen, PSNR SR, PSNR bicubic, SSIM SR, SSIM bicubic)"""
    recall: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """variant -> (recall, precision, reference objects)"""
    uplink_kbps: float = 0.0
    patch_kbps: float = 0.0
    full_kbps: float = 0.0


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        height, width = frame.shape[:2]
        frames.append(frame[: height - height % 32, : width - width % 32])  # whole JPEG blocks after shrinking
    return frames, float(fps)


def evaluate(held_back: list[np.ndarray], quality: UplinkQuality, processor: SuperResolution) -> tuple[float, float, float, float]:
    sr_psnr, bi_psnr, sr_ssim, bi_ssim = [], [], [], []
    for frame in held_back:
        shrunk, _ = degrade(frame, quality)
        restored = processor.upscale(shrunk, frame.shape[1], frame.shape[0])
        bicubic = upscale_bicubic(shrunk, frame.shape[1], frame.shape[0])
        sr_psnr.append(psnr(frame, restored))
        bi_psnr.append(psnr(frame, bicubic))
        sr_ssim.append(ssim(frame, restored))
        bi_ssim.append(ssim(frame, bicubic))
    return (statistics.fmean(sr_psnr), statistics.fmean(bi_psnr), statistics.fmean(sr_ssim), statistics.fmean(bi_ssim))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def watched(detector: object, frame: np.ndarray) -> list[tuple[str, np.ndarray]]:
    found = detector.detect(frame)  # type: ignore[attr-defined]
    return [(label, box) for label, score, box in zip(found.labels(), found.scores, found.boxes)
            if label in WATCH and score >= 0.5]


def match(reference: list[tuple[str, np.ndarray]], test: list[tuple[str, np.ndarray]]) -> tuple[int, int]:
    """(reference boxes found, test boxes that match one), greedily at IoU 0.5 and the same label."""
    used: set[int] = set()
    found = 0
    for label, box in reference:
        best, best_iou = -1, 0.5
        for index, (other_label, other) in enumerate(test):
            if index in used or other_label != label:
                continue
            overlap = iou(box, other)
            if overlap >= best_iou:
                best, best_iou = index, overlap
        if best >= 0:
            used.add(best)
            found += 1
    return found, len(used)


def detector_recall(detector: object, held_back: list[np.ndarray], quality: UplinkQuality,
                    processor: SuperResolution) -> dict[str, tuple[float, float, int]]:
    totals = {variant: [0, 0, 0] for variant in ("full quality", "bicubic", "super-resolution")}
    for frame in held_back:
        reference = watched(detector, frame)
        shrunk, _ = degrade(frame, quality)
        variants = {"full quality": frame,
                    "bicubic": upscale_bicubic(shrunk, frame.shape[1], frame.shape[0]),
                    "super-resolution": processor.upscale(shrunk, frame.shape[1], frame.shape[0])}
        for variant, picture in variants.items():
            test = reference if variant == "full quality" else watched(detector, picture)
            found, matched = match(reference, test)
            totals[variant][0] += found
            totals[variant][1] += matched
            totals[variant][2] += len(test)
    objects = totals["full quality"][2]  # the reference's own boxes
    return {variant: (found / objects if objects else 1.0, matched / tested if tested else 1.0, objects)
            for variant, (found, matched, tested) in totals.items()}


def run_clip(path: Path, quality: UplinkQuality, patches_per_s: float, round_s: float, steps: int,
             detector: object, console: Console) -> ClipResult:
    frames, fps = read_clip(path)
    split = int(len(frames) * 0.6)
    held_back = frames[split:][:: max(1, (len(frames) - split) // HELD_BACK_FRAMES)][:HELD_BACK_FRAMES]
    result = ClipResult(path.name, fps, (frames[0].shape[1], frames[0].shape[0]))
    sampler = PatchSampler(quality, patch_px=32 * quality.factor if min(result.size) < 300 else 64,
                           patches_per_s=patches_per_s)
    trainer = OnlineTrainer(seed=0)
    processor = SuperResolution()
    result.curve.append((0.0, 0, *evaluate(held_back, quality, processor)))
    patch_bytes = 0
    next_round = round_s
    for index, frame in enumerate(frames[:split]):
        ts = index / fps
        if sampler.due(ts):
            chosen = sampler.choose(frame, ts).patches
            patch_bytes += sum(len(encode_patch(p)) for p in chosen)
            trainer.add([p.pixels for p in chosen], quality)
        if ts >= next_round:
            next_round += round_s
            trainer.train_round(steps)
            processor.load(trainer.export())
            result.curve.append((ts, trainer.patches_seen, *evaluate(held_back, quality, processor)))
            point = result.curve[-1]
            console.print(f"  {path.name}: {ts:5.1f} s, {trainer.patches_seen:4d} patches: PSNR {point[2]:.2f} dB "
                          f"(bicubic {point[3]:.2f}, {point[2] - point[3]:+.2f} dB), SSIM {point[4]:.4f} ({point[5]:.4f})")
    if trainer.patches_seen > result.curve[-1][1]:  # the patches since the last round: one more round at the end
        trainer.train_round(steps)
        processor.load(trainer.export())
        result.curve.append((split / fps, trainer.patches_seen, *evaluate(held_back, quality, processor)))
    seconds = split / fps
    result.patch_kbps = patch_bytes * 8 / 1000 / seconds
    sample = frames[:split:max(1, split // 40)]
    result.uplink_kbps = statistics.fmean(len(degrade(f, quality)[1]) for f in sample) * fps * 8 / 1000
    result.full_kbps = statistics.fmean(len(encode_jpeg(f, 85)) for f in sample) * fps * 8 / 1000
    detection_frames = frames[split:][:: max(1, (len(frames) - split) // DETECTION_FRAMES)][:DETECTION_FRAMES]
    console.print(f"  {path.name}: cloud detector on {len(detection_frames)} held-back frames ...")
    result.recall = detector_recall(detector, detection_frames, quality, processor)
    return result


def patch_cpu_ratio(quality: UplinkQuality, patches_per_s: float) -> tuple[float, float]:
    """(sampler alone, patch sampler) in ms of one core per second: 6 x 1080p25 masters."""
    scene = cv2.resize(cv2.imread(str(REPO / "services" / "capture" / "scene_assets" / "background.jpg")), (1920, 1080))
    frames = [np.roll(scene, 7 * i, axis=1) for i in range(8)]
    change = SceneChangeDetector()
    cv2.setNumThreads(1)
    started = time.process_time()
    for i in range(150):
        change.features(frames[i % len(frames)])
    features_ms = (time.process_time() - started) * 1000 / 150
    sampler = PatchSampler(quality, patches_per_s=patches_per_s)
    started = time.process_time()
    for i in range(10):
        sampler.choose(frames[i % len(frames)], float(i))
    choose_ms = (time.process_time() - started) * 1000 / 10
    cv2.setNumThreads(-1)
    return features_ms * 6 * 25, choose_ms * patches_per_s / sampler.per_frame


def draw_chart(results: list[ClipResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for result in results:
        axis.plot([p[1] for p in result.curve], [p[2] - p[3] for p in result.curve], marker="o", label=result.name)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xlabel("patches the trainer has seen")
    axis.set_ylabel("PSNR gain over bicubic (dB), held-back frames")
    axis.set_title("Super-resolution trained online from the site's own patches")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "video",
                        help="folder with the real clips (default ../shared/data/video; else the test cuts)")
    parser.add_argument("--clips", default=",".join(CLIPS), help="comma list of clip file names")
    parser.add_argument("--factor", type=int, default=2, help="the uplink shrinks frames by this factor (default 2)")
    parser.add_argument("--quality", type=int, default=30, help="and compresses them at this JPEG quality (default 30)")
    parser.add_argument("--patches-per-s", type=float, default=10.0, help="patches the edge sends a second (default 10)")
    parser.add_argument("--round-s", type=float, default=5.0, help="seconds of capture between training rounds")
    parser.add_argument("--steps-per-round", type=int, default=100, help="Adam steps per round (default 100)")
    parser.add_argument("--chart", type=Path, default=None, help="write the gain chart here (PNG)")
    args = parser.parse_args()
    console = Console(width=180)
    quality = UplinkQuality(args.factor, args.quality)
    folder = args.data if args.data.is_dir() else FALLBACK
    paths = [folder / name for name in args.clips.split(",") if (folder / name).exists()]
    if not paths:
        console.print(f"no clips found in {folder}")
        return 1
    from vision.detectors import load_detector

    detector = load_detector("tiled", ["CPUExecutionProvider"])
    console.print(f"uplink: {quality.describe()}; {args.patches_per_s:g} patches/s; a round of {args.steps_per_round} "
                  f"steps every {args.round_s:g} s of capture")
    results = [run_clip(p, quality, args.patches_per_s, args.round_s, args.steps_per_round, detector, console) for p in paths]

    table = Table(title=f"Super-resolution against bicubic on held-back frames ({quality.describe()})")
    for heading in ("clip", "size, fps", "patches", "PSNR SR", "PSNR bicubic", "gain dB", "SSIM SR", "SSIM bicubic",
                    "uplink kbit/s", "+ patches", "full quality kbit/s"):
        table.add_column(heading, justify="left" if heading == "clip" else "right")
    for r in results:
        _, patches, sr_p, bi_p, sr_s, bi_s = r.curve[-1]
        table.add_row(r.name, f"{r.size[0]}x{r.size[1]}, {r.fps:g}", str(patches), f"{sr_p:.2f}", f"{bi_p:.2f}",
                      f"{sr_p - bi_p:+.2f}", f"{sr_s:.4f}", f"{bi_s:.4f}", f"{r.uplink_kbps:.0f}", f"{r.patch_kbps:.0f}",
                      f"{r.full_kbps:.0f} ({r.full_kbps / (r.uplink_kbps + r.patch_kbps):.1f}x)")
    console.print(table)

    table = Table(title="The cloud detector (CenterNet + NanoDet tiles) on held-back frames: boxes of watched labels, "
                        "IoU 0.5, against the detector on the original frames")
    for heading in ("clip", "reference boxes", "recall bicubic", "recall SR", "precision bicubic", "precision SR"):
        table.add_column(heading, justify="left" if heading == "clip" else "right")
    for r in results:
        objects = r.recall["full quality"][2]
        table.add_row(r.name, str(objects), f"{r.recall['bicubic'][0]:.3f}", f"{r.recall['super-resolution'][0]:.3f}",
                      f"{r.recall['bicubic'][1]:.3f}", f"{r.recall['super-resolution'][1]:.3f}")
    console.print(table)

    alone, patches = patch_cpu_ratio(quality, args.patches_per_s)
    console.print(f"CPU, one core: the sampler's change features at 6 x 1080p25 {alone:.0f} ms/s; choosing "
                  f"{args.patches_per_s:g} patches/s {patches:.0f} ms/s = {patches / alone:.2f}x the sampler alone")
    if args.chart:
        draw_chart(results, args.chart)
        console.print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
