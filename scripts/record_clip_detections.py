"""Record the edge detector's person boxes on every frame of a clip, for tests that replay them.

Writes NAME.detections.json.gz beside the clip in the layout ``hybridcam sampling-eval`` uses for its
edge results ({"version", "footage": {name, fps, frame_count, width, height}, "detectors", "edge": per
frame [[label, score, x1, y1, x2, y2], ...]}), so services/edge_infer/clip_replay.py reads either.
Computed by the detector, not annotated by hand.
Usage: python scripts/record_clip_detections.py CLIP.mp4 [--model nanodet] [--threshold 0.35]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from vision.detectors.registry import load_detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="nanodet")
    parser.add_argument("--threshold", type=float, default=0.35)
    args = parser.parse_args()
    detector = load_detector(args.model, score_threshold=args.threshold)
    capture = cv2.VideoCapture(str(args.clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames: list[list[list[object]]] = []
    width = height = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        height, width = frame.shape[:2]
        found = detector.detect(frame)
        frames.append([[label, round(float(score), 3), *(round(float(v), 1) for v in box)]
                       for label, score, box in zip(found.labels(detector.labels), found.scores, found.boxes)])
    capture.release()
    content = {"version": 1, "footage": {"name": args.clip.stem, "fps": fps, "frame_count": len(frames),
                                         "width": width, "height": height},
               "detectors": {"edge_model": args.model, "edge_score_threshold": args.threshold}, "edge": frames}
    out = args.clip.with_name(f"{args.clip.stem}.detections.json.gz")
    out.write_bytes(gzip.compress(json.dumps(content, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {out}: {len(frames)} frames, {sum(len(f) for f in frames)} boxes")


if __name__ == "__main__":
    main()
