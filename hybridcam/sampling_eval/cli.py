"""Replay cloud-sampling policies on recorded footage and measure what each would have caught.

For every VIDEO (a file, or synthetic:walkthrough for the built-in scene) the edge detector and the
cloud-tier reference detector (the local model server's: CenterNet + NanoDet tiles) run on every
frame once; their results are cached in .hybridcam/sampling-cache/NAME.detections.json.gz (--cache-dir),
so that later runs replay the policies in seconds. Objects are the reference's tracks (its boxes linked by
IoU; on the synthetic scene, its ground truth names them: one object per person and visit) lasting at least
--min-track-s; events are the intervals in which the reference sees a watch label
(gaps under 1 s merged). The table shows, per policy: frames sent, objects seen by the cloud (a sent
frame shows them at a usable size), median and p90 delay from an object's first frame to its first
sent frame, frames sent per object, event recall, label recall over time, and USD per camera-hour
at the price set's Rekognition price. The trade-off chart (object recall and delay against frames
sent) is written as a PNG and a self-contained HTML page.
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
from hybridcam.sampling_eval.footage import FootageError, ground_truth_people, open_footage
from hybridcam.sampling_eval.objects import reference_objects
from hybridcam.sampling_eval.reference import DetectorChoice, frame_results
from hybridcam.sampling_eval.replay import Score, default_specs, find_events, reference_positive, replay, score
from shared.errors import ConfigError

DEFAULT_WATCH = "person,car,truck,bus,motorcycle,bicycle"
HEADER = ["policy", "frames sent", "% sent", "objects seen", "object recall", "first send median s", "p90 s",
          "frames/object", "events caught", "event recall", "event delay median s", "label recall", "USD/camera-h",
          "reasons"]
GOAL_RECALL = 0.95
GOAL_DELAY_S = 1.0
GOAL_SENT = 0.02
"""... where the clip has at most one new object per second"""
GOAL_GAIN = 0.10
"""object recall above every_nth's at the same number of frames"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or synthetic:walkthrough")
    parser.add_argument("--watch", default=DEFAULT_WATCH, help=f"watch labels, comma-separated (default {DEFAULT_WATCH})")
    parser.add_argument("--reference-min-score", type=float, default=0.5,
                        help="reference detections at or above this score make a frame positive (default 0.5)")
    parser.add_argument("--min-track-s", type=float, default=1.0,
                        help="reference objects seen for less than this long are ignored (default 1.0)")
    parser.add_argument("--min-object-px", type=float, default=12.0,
                        help="an object counts as seen in a sent frame where its box's shorter side has at least "
                             "this many pixels (default 12)")
    parser.add_argument("--detector-stride", type=int, default=0, metavar="N",
                        help="run the detectors on every Nth frame only (high-rate footage on a small machine; "
                             "between them the reference repeats and the edge's tracker carries; default 0: the "
                             "stride of the cached results, else every frame)")
    parser.add_argument("--cloud-latency", type=float, default=1.0,
                        help="seconds after a send before the adaptive policy learns the cloud's answer (default 1.0)")
    parser.add_argument("--cache-dir", type=Path, help="where per-frame results are cached (default: .hybridcam/sampling-cache/, or a cache already beside the video)")
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
        if args.detector_stride < 0:
            raise ConfigError("--detector-stride must be 0 (as cached) or at least 1")
        choice = DetectorChoice(threads=args.threads, stride=args.detector_stride)
        results = frame_results(footage, choice, args.cache_dir,
                                lambda done, total: progress.update(task, completed=done))
        if results.delivered_frames is not None:
            footage = footage.as_delivered(results.delivered_frames)
            console.print(footage.count_note(), highlight=False)
        progress.update(task, description=f"{footage.name}: replaying policies", completed=0)
        runs = replay(footage, results, default_specs(footage.fps, watch_labels=watch), watch,
                      lambda done, total: progress.update(task, completed=done), args.cloud_latency, args.reference_min_score)
    positives = [reference_positive(frame, watch, args.reference_min_score) for frame in results.reference]
    events = find_events(positives, footage.fps)
    truth = ground_truth_people(footage)
    objects = reference_objects(results, footage.fps, watch, args.reference_min_score, args.min_track_s,
                                args.min_object_px, truth)
    tracked = objects if truth is None else reference_objects(results, footage.fps, watch, args.reference_min_score,
                                                               args.min_track_s, args.min_object_px)
    scores = [score(run, events, positives, results, footage.fps, watch, args.reference_min_score, price,
                    objects=objects) for run in runs]
    summary = {"video": video, "name": footage.name, "fps": footage.fps, "frames": footage.frame_count,
               "container_frames": footage.declared_count or footage.frame_count,
               "duration_s": round(footage.duration_s, 1), "events": [(e.first / footage.fps, e.last / footage.fps)
                                                                    for e in events],
               "objects": len(objects), "new_objects_per_s": round(len(objects) / footage.duration_s, 3),
               "object_identity": "reference tracks" if truth is None else "ground truth",
               "reference_tracks": len(tracked),
               "reference": results.detectors["reference_model"], "edge": results.detectors["edge_model"],
               "detector_stride": results.stride}
    return summary, scores


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table_rows(scores: list[Score]) -> list[list[str]]:
    return [[s.label, str(s.sent), f"{s.sent_fraction:.2%}", f"{s.objects_seen}/{s.objects}", f"{s.object_recall:.0%}",
             fmt(s.object_delay_median_s, ".2f"), fmt(s.object_delay_p90_s, ".2f"), f"{s.frames_per_object:.2f}",
             f"{s.caught}/{s.events}", f"{s.event_recall:.0%}", fmt(s.delay_median_s, ".2f"), f"{s.label_recall:.0%}",
             f"{s.usd_per_camera_hour:.3f}", ", ".join(f"{k} {v}" for k, v in s.reasons.items())] for s in scores]


def goals(adaptive: Score, matched: Score | None, new_objects_per_s: float) -> dict[str, bool | None]:
    """Each object-level goal met or not (None: does not apply to this clip)."""
    return {
        "recall": adaptive.object_recall >= GOAL_RECALL,
        "delay": adaptive.object_delay_median_s is not None and adaptive.object_delay_median_s <= GOAL_DELAY_S,
        "sent": adaptive.sent_fraction <= GOAL_SENT if new_objects_per_s <= 1.0 else None,
        "gain": None if matched is None else adaptive.object_recall - matched.object_recall >= GOAL_GAIN - 1e-9,
        "not_fewer": None if matched is None else adaptive.object_recall >= matched.object_recall - 1e-9,
    }


def verdict_line(name: str, scores: list[Score], new_objects_per_s: float) -> str:
    adaptive = next(s for s in scores if s.label == "adaptive")
    matched = next((s for s in scores if s.family == "every_nth (matched)"), None)
    met = goals(adaptive, matched, new_objects_per_s)
    core = met["recall"] and met["delay"] and met["sent"] is not False and met["not_fewer"] is not False
    sent_goal = "<= 2% sent, " if met["sent"] is not None else ""
    line = (f"{name}: adaptive sends {adaptive.sent_fraction:.2%} of frames, the cloud sees {adaptive.objects_seen}/"
            f"{adaptive.objects} objects ({adaptive.object_recall:.0%}), median first-send delay "
            f"{fmt(adaptive.object_delay_median_s, '.2f')} s, {adaptive.frames_per_object:.2f} frames per object: "
            f"goal ({sent_goal}>= 95% objects, <= 1 s) {'met' if core else 'NOT met'}")
    if matched:
        gain = adaptive.object_recall - matched.object_recall
        line += (f"; {matched.label} sees {matched.objects_seen}/{matched.objects} ({matched.object_recall:.0%}): "
                 f"{gain * 100:+.0f} pp")
    return line


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    out = Console(width=220 if not sys.stdout.isatty() else None)
    price = usd_per_image(args.prices)
    results: list[dict[str, Any]] = []
    scores_by_clip: dict[str, list[Score]] = {}
    rates: dict[str, float] = {}
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
        rates[summary["name"]] = summary["new_objects_per_s"]
        if not args.json:
            named = ("" if summary["object_identity"] == "reference tracks" else
                     f"; named by the scene's ground truth, the reference's IoU tracker made {summary['reference_tracks']}")
            table = Table(title=f"{summary['name']}: {summary['frames']} frames at {summary['fps']:g} fps, "
                                f"{summary['objects']} objects ({summary['new_objects_per_s']:g} new per s{named}), "
                                f"{len(summary['events'])} events (reference {summary['reference']})")
            for heading in HEADER:
                table.add_column(heading, justify="left" if heading in ("policy", "reasons") else "right")
            for row in table_rows(scores):
                table.add_row(*row)
            out.print(table)
            out.print(verdict_line(summary["name"], scores, summary["new_objects_per_s"]), highlight=False)
    if scores_by_clip:
        png = render_png(scores_by_clip, args.out / "sampling.png")
        notes = [verdict_line(name, scores, rates[name]) for name, scores in scores_by_clip.items()]
        notes.append(f"Reference: the cloud-tier detector on every frame, watch labels {args.watch}, score >= "
                     f"{args.reference_min_score:g}. USD per camera-hour: Rekognition DetectLabels at {price * 1000:g} "
                     f"USD per 1,000 images ({args.prices}).")
        page = render_html(png, {name: table_rows(s) for name, s in scores_by_clip.items()}, HEADER, notes,
                           args.out / "sampling.html")
        console.print(f"chart: {png} and {page}", highlight=False)
    if args.json:
        print(json.dumps({"clips": results}, indent=1))
    return 1 if failed and not results else (3 if failed else 0)
