"""Pose stage cost and action latency, as ratios to the detector alone measured in the same run.

1. Cost: real clips through NanoDet (the detector alone, timed per frame), then the pose stage on the
   tracked people of the same frames: MoveNet lightning per person crop ("crops") or MoveNet multi-pose
   once per frame ("frame"), plus the action classifier. Printed per person and per frame, and as a
   ratio to the detector's time per frame.
2. Latency: acted scenes (a real-photo person on the real beach, services/capture/acted_scene.py) at a
   real camera rate: from the moment the action starts in the scene to the first frame whose detections
   carry it (scene time; the rules' own waiting dominates), and that frame's processing time (detector +
   pose stage) as a ratio to the detector alone.
3. Calibration: what walking people on the real clips look like to the rules (torso angle, box shape, speed).
4. False alarms: the actions raised on whole real clips, where nobody falls, lies or runs.

Usage: python bench/actions.py [--threads 2] [--frames 150] [--parts calibration cost latency false-alarms] [--clips FILE...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.capture.acted_scene import Act, ActedScene  # noqa: E402
from services.edge_infer.clip_replay import live_detections, recorded_detections, replay, video_frames  # noqa: E402
from services.edge_infer.pose_stage import PoseStage  # noqa: E402
from vision.actions import ActionClassifier, torso_angle_deg  # noqa: E402
from vision.detectors.registry import load_detector  # noqa: E402
from vision.pose import MultiPoseModel, SinglePoseModel  # noqa: E402

CLIPS = (REPO / "tests/data/clips/store-aisle-cut.mp4", REPO / "tests/data/clips/one-by-one-stays-cut.mp4")


def cost(args: argparse.Namespace, detector, single: SinglePoseModel, multi: MultiPoseModel) -> None:
    print("\n## Pose stage cost (per frame and per person, ratio to NanoDet alone on the same frames)\n")
    print("| clip | mode | frames | people posed | NanoDet ms/frame | pose stage ms/frame | ms per person | per person / NanoDet | (NanoDet + pose) / NanoDet |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clip in CLIPS:
        frames = list(video_frames(clip, limit=args.frames))
        fps = 1.0 / (frames[1][0] - frames[0][0])
        for mode, model in (("crops", single), ("frame", multi)):
            stage = PoseStage(model, ActionClassifier(), rate_hz=fps, max_people=8)  # every analysed frame: the worst case
            result = replay(frames, live_detections(detector), stage)
            t = result.timing
            per_frame_det = t.detector_ms / t.frames
            per_frame_pose = t.pose_ms / t.frames
            per_person = t.pose_ms / max(t.people_posed, 1)
            print(f"| {clip.name} | {mode} | {t.frames} | {t.people_posed} | {per_frame_det:.1f} | {per_frame_pose:.1f} | "
                  f"{per_person:.1f} | {per_person / per_frame_det:.2f} | {(per_frame_det + per_frame_pose) / per_frame_det:.2f} |")


def latency(args: argparse.Namespace, detector, single: SinglePoseModel) -> None:
    print("\n## Action latency (acted scenes, 15 fps; pose stage at 5 poses/s per person)\n")
    print("| scene | action | starts at (s) | first event at (s) | latency (s) | frames | NanoDet ms/frame | "
          "(NanoDet + pose stage) ms/frame | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    # The scenes of tests/test_actions_footage.py, at 15 fps instead of 5.
    scenes = (("walk, fall, lie", "fall", [Act("walk", 1.6), Act("fall", 0.6), Act("lie", 3.0)], 200, 0.15),
              ("walk, run", "running", [Act("walk", 2.5), Act("run", 2.0)], 160, 0.05))
    for name, action, script, person_px, start_x in scenes:
        scene = ActedScene(script, sprite=1, person_px=person_px, start_x=start_x, fps=15.0)
        stage = PoseStage(single, ActionClassifier(), rate_hz=5.0, max_people=4)
        result = replay(scene.frames(), live_detections(detector), stage)
        detector_ms = result.timing.detector_ms / result.timing.frames
        start = scene.start_of("fall" if action == "fall" else "run")
        event = next((r for r in result.results if any(action in d.actions for d in r.detections)), None)
        if event is None:
            print(f"| {name} | {action} | {start:.2f} | not found | | | {detector_ms:.1f} | | |")
            continue
        frame_ms = (result.timing.detector_ms + result.timing.pose_ms) / result.timing.frames
        print(f"| {name} | {action} | {start:.2f} | {event.capture_ts:.2f} | {event.capture_ts - start:.2f} | "
              f"{round((event.capture_ts - start) * scene.fps)} | {detector_ms:.1f} | {frame_ms:.1f} | {frame_ms / detector_ms:.2f} |")


def calibration(args: argparse.Namespace, detector, single: SinglePoseModel) -> None:
    """What walking people look like to the rules, on the real clips: torso angle, speed, box aspect."""
    print("\n## Calibration: walking people on the real clips (pose stage at 5 poses/s per person)\n")
    print("| clip | poses | torso angle p95 / max (deg) | box width/height max | speed p95 / max (standing heights/s) | actions seen |")
    print("|---|---|---|---|---|---|")
    clips = [("tests/data/video/one-by-one-person-detection.mp4", True), ("tests/data/clips/one-by-one-stays-cut.mp4", True),
             ("tests/data/faces/walking.mp4", False), ("tests/data/clips/store-aisle-cut.mp4", False)]
    for name, recorded in clips:
        path = REPO / name
        detect = (recorded_detections(path.with_name(f"{path.stem}.detections.json.gz")) if recorded
                  else live_detections(detector))
        stage = PoseStage(single, ActionClassifier(), rate_hz=5.0, max_people=8)
        result = replay(video_frames(path), detect, stage)
        angles, aspects, speeds, seen = [], [], [], set()
        last: dict[int, tuple[float, float, float, float]] = {}  # track -> (ts, cx, cy, smoothed speed)
        for frame in result.results:
            for d in frame.detections:
                seen.update(d.actions)
                if d.pose is None or d.pose.ts != frame.capture_ts or d.track_id is None:
                    continue
                keypoints = np.array(d.pose.keypoints, np.float32)
                angle = torso_angle_deg(keypoints, 0.3)
                if angle is not None:
                    angles.append(angle)
                width, height = d.box[2] - d.box[0], d.box[3] - d.box[1]
                aspects.append(width / max(height, 1.0))
                cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
                if d.track_id in last:
                    ts0, x0, y0, smooth = last[d.track_id]
                    dt = frame.capture_ts - ts0
                    smooth += (1 - math.exp(-dt / 0.5)) * (math.hypot(cx - x0, cy - y0) / max(height, 1.0) / dt - smooth)
                    speeds.append(smooth)
                    last[d.track_id] = (frame.capture_ts, cx, cy, smooth)
                else:
                    last[d.track_id] = (frame.capture_ts, cx, cy, 0.0)
        p95 = lambda values: float(np.percentile(values, 95)) if values else float("nan")  # noqa: E731
        print(f"| {path.name} | {len(aspects)} | {p95(angles):.0f} / {max(angles, default=float('nan')):.0f} | "
              f"{max(aspects, default=float('nan')):.2f} | {p95(speeds):.2f} / {max(speeds, default=float('nan')):.2f} | "
              f"{', '.join(sorted(seen)) or 'none'} |")


def false_alarms(args: argparse.Namespace, detector, single: SinglePoseModel) -> None:
    """Every frame of whole clips (default: the committed real clips; --clips for others, e.g. the full
    originals), NanoDet's recorded boxes when NAME.detections.json.gz lies beside the clip, else NanoDet live."""
    print("\n## Actions raised on whole real clips (pose stage at 5 poses/s per person)\n")
    print("| clip | frames | fps | people posed | fall | lying | running | loitering | hands raised |")
    print("|---|---|---|---|---|---|---|---|---|")
    clips = [Path(c) for c in args.clips] or [REPO / "tests/data/video/one-by-one-person-detection.mp4",
                                               REPO / "tests/data/video/car-detection.mp4",
                                               REPO / "tests/data/faces/walking.mp4", *sorted((REPO / "tests/data/clips").glob("*.mp4"))]
    for path in clips:
        recorded = path.with_name(f"{path.stem}.detections.json.gz")
        detect = recorded_detections(recorded) if recorded.is_file() else live_detections(detector)
        result = replay(video_frames(path), detect, PoseStage(single, ActionClassifier(), rate_hz=5.0, max_people=4))
        fps = 1.0 / (result.results[1].capture_ts - result.results[0].capture_ts) if len(result.results) > 1 else 0.0
        starts = {name: 0 for name in ("fall", "lying", "running", "loitering", "hands_raised")}
        active: set[tuple[int, str]] = set()
        for frame in result.results:
            now = {(d.track_id or -1, name) for d in frame.detections for name in d.actions}
            for _, name in now - active:
                starts[name] += 1
            active = now
        print(f"| {path.name} | {result.timing.frames} | {fps:.3g} | {result.timing.people_posed} | "
              + " | ".join(str(starts[name]) for name in starts) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150, help="frames of each clip for the cost table")
    parser.add_argument("--parts", nargs="+", default=["calibration", "cost", "latency", "false-alarms"],
                        choices=["calibration", "cost", "latency", "false-alarms"], help="which tables to print")
    parser.add_argument("--clips", nargs="*", default=[], help="clips for the false-alarms table (default: the committed real clips)")
    args = parser.parse_args()
    providers = ["CPUExecutionProvider"]
    detector = load_detector("nanodet", providers, intra_op_num_threads=args.threads)
    single = SinglePoseModel(REPO / "models/movenet-lightning.onnx", providers, args.threads)
    multi = MultiPoseModel(REPO / "models/movenet-multipose.onnx", providers, args.threads)
    parts = {"calibration": lambda: calibration(args, detector, single), "cost": lambda: cost(args, detector, single, multi),
             "latency": lambda: latency(args, detector, single), "false-alarms": lambda: false_alarms(args, detector, single)}
    for part in args.parts:
        parts[part]()


if __name__ == "__main__":
    main()
