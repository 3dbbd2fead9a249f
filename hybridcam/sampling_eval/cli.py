"""Replay cloud-sampling policies on recorded footage and measure what each would have caught.

For every VIDEO (a file, or synthetic:walkthrough for the built-in scene) the edge detector and the
cloud-tier reference detector (the local model server's: CenterNet + NanoDet tiles) run on every
frame once; their results are cached beside the video as NAME.detections.json.gz, so that later
runs replay the policies in seconds. Events are the intervals in which the reference sees a watch
label (gaps under 1 s merged). The table shows, per policy: frames sent, event recall, median and
p95 delay from an event's start to its first sent frame, label recall over time, and USD per
camera-hour at the price set's Rekognition price. The trade-off chart is written as a PNG and a
self-contained HTML page.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hybridcam.sampling_eval.chart import render_html, render_png
from hybridcam.sampling_eval.footage import FootageError, open_footage
from hybridcam.sampling_eval.reference import DetectorChoice, frame_results
from hybridcam.sampling_eval.replay import Score, default_specs, find_events, reference_positive, replay, score
from shared.errors import ConfigError

DEFAULT_WATCH = "person,car,truck,bus,motorcycle,bicycle"
HEADER = ["policy", "frames sent", "% sent", "events caught", "event recall", "delay median s", "delay p95 s",
          "label recall", "USD/camera-h", "reasons"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or synthetic:walkthrough")
    parser.add_argument("--watch", default=DEFAULT_WATCH, help=f"watch labels, comma-separated (default {DEFAULT_WATCH})")
    parser.add_argument("--reference-min-score", type=float, default=0.5,
                        help="reference detections at or above this score make a frame positive (default 0.5)")
    parser.add_argument("--cloud-latency", type=float, default=1.0,
                        help="seconds after a send before the adaptive policy learns the cloud's answer (default 1.0)")
    parser.add_argument("--cache-dir", type=Path, help="where per-frame results are cached (default: beside each video)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per detector (0 = all cores)")
    parser.add_argument("--prices", default="us-east-1-2026", help="price set for USD per camera-hour (default us-east-1-2026)")
    parser.add_argument("--out", type=Path, default=Path("sampling-eval"), help="folder for the chart (PNG and HTML)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (for hybridcam cost --send-fraction-from)")


def usd_per_image(price_set: str) -> float:
    from cost_model.price_sets import PriceSetError, load_price_set

    try:
        item = load_price_set(price_set).get("rekognition.detect_labels")
    except PriceSetError as error:
        raise ConfigError(str(error)) from None
    if item is None:
        raise ConfigError(f"price set {price_set!r} has no Rekognition DetectLabels price")
    return item.first_rate


def evaluate(video: str, args: argparse.Namespace, console: Console, price: float) -> tuple[dict[str, Any], list[Score]]:
    watch = frozenset(label.strip() for label in args.watch.split(",") if label.strip())
    footage = open_footage(video)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"{footage.name}: detectors on every frame", total=footage.frame_count)
        results = frame_results(footage, DetectorChoice(threads=args.threads), args.cache_dir,
                                lambda done, total: progress.update(task, completed=done))
        if results.delivered_frames is not None:
            footage = footage.as_delivered(results.delivered_frames)
            console.print(footage.count_note(), highlight=False)
        progress.update(task, description=f"{footage.name}: replaying policies", completed=0)
        runs = replay(footage, results, default_specs(footage.fps), watch,
                      lambda done, total: progress.update(task, completed=done), args.cloud_latency, args.reference_min_score)
    positives = [reference_positive(frame, watch, args.reference_min_score) for frame in results.reference]
    events = find_events(positives, footage.fps)
    scores = [score(run, events, positives, results, footage.fps, watch, args.reference_min_score, price) for run in runs]
    summary = {"video": video, "name": footage.name, "fps": footage.fps, "frames": footage.frame_count,
               "container_frames": footage.declared_count or footage.frame_count,
               "duration_s": round(footage.duration_s, 1), "events": [(e.first / footage.fps, e.last / footage.fps)
                                                                    for e in events],
               "reference": results.detectors["reference_model"], "edge": results.detectors["edge_model"]}
    return summary, scores


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table_rows(scores: list[Score]) -> list[list[str]]:
    return [[s.label, str(s.sent), f"{s.sent_fraction:.2%}", f"{s.caught}/{s.events}", f"{s.event_recall:.0%}",
             fmt(s.delay_median_s, ".2f"), fmt(s.delay_p95_s, ".2f"), f"{s.label_recall:.0%}",
             f"{s.usd_per_camera_hour:.3f}", ", ".join(f"{k} {v}" for k, v in s.reasons.items())] for s in scores]


def verdict_line(name: str, scores: list[Score]) -> str:
    adaptive = next(s for s in scores if s.label == "adaptive")
    matched = next((s for s in scores if s.family == "every_nth (matched)"), None)
    met = (adaptive.sent_fraction <= 0.05 and adaptive.event_recall >= 0.95
           and adaptive.delay_median_s is not None and adaptive.delay_median_s <= 1.0)
    line = (f"{name}: adaptive sends {adaptive.sent_fraction:.2%} of frames, catches {adaptive.caught}/{adaptive.events} "
            f"events ({adaptive.event_recall:.0%}), median first-send delay {fmt(adaptive.delay_median_s, '.2f')} s: "
            f"goal (<= 5%, >= 95%, <= 1 s) {'met' if met else 'NOT met'}")
    if matched:
        line += f"; {matched.label} catches {matched.caught}/{matched.events} ({matched.event_recall:.0%})"
    return line


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    out = Console(width=220 if not sys.stdout.isatty() else None)
    price = usd_per_image(args.prices)
    results: list[dict[str, Any]] = []
    scores_by_clip: dict[str, list[Score]] = {}
    failed = 0
    for video in args.videos:
        try:
            summary, scores = evaluate(video, args, console, price)
        except FootageError as error:
            print(f"hybridcam sampling-eval: {error}", file=sys.stderr)
            failed += 1
            continue
        results.append({**summary, "policies": [asdict(s) for s in scores]})
        scores_by_clip[summary["name"]] = scores
        if not args.json:
            table = Table(title=f"{summary['name']}: {summary['frames']} frames at {summary['fps']:g} fps, "
                                f"{len(summary['events'])} events (reference {summary['reference']})")
            for heading in HEADER:
                table.add_column(heading, justify="left" if heading in ("policy", "reasons") else "right")
            for row in table_rows(scores):
                table.add_row(*row)
            out.print(table)
            out.print(verdict_line(summary["name"], scores), highlight=False)
    if scores_by_clip:
        png = render_png(scores_by_clip, args.out / "sampling.png")
        notes = [verdict_line(name, scores) for name, scores in scores_by_clip.items()]
        notes.append(f"Reference: the cloud-tier detector on every frame, watch labels {args.watch}, score >= "
                     f"{args.reference_min_score:g}. USD per camera-hour: Rekognition DetectLabels at {price * 1000:g} "
                     f"USD per 1,000 images ({args.prices}).")
        page = render_html(png, {name: table_rows(s) for name, s in scores_by_clip.items()}, HEADER, notes,
                           args.out / "sampling.html")
        console.print(f"chart: {png} and {page}", highlight=False)
    if args.json:
        print(json.dumps({"clips": results}, indent=1))
    return 1 if failed and not results else (3 if failed else 0)
