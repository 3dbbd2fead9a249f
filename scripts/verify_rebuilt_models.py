"""Check rebuilt ONNX models against the committed ones by what they output on tests/data photos.

ONNX bytes differ from one conversion to the next, so hashes say nothing; instead both models run
through the project's own detector (same preprocessing) and must agree on raw outputs and detections.
The face models (blazeface, faceres) are compared through cloud/local/face_models.py: same faces found
(box IoU, score) and descriptors of those faces that agree (cosine).
Usage: python scripts/verify_rebuilt_models.py REBUILT_DIR [--models-dir models] [--names nanodet centernet ...]
Exit status 0 when every rebuilt model matches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cloud.local.face_models import BlazeFaceDetector, FaceResDescriber  # noqa: E402
from vision.detectors.base import Detections  # noqa: E402
from vision.detectors.nms import box_iou  # noqa: E402
from vision.detectors.onnx_detector import OnnxDetector  # noqa: E402
from vision.detectors.registry import load_detector  # noqa: E402

IMAGES = sorted((REPO_ROOT / "tests" / "data").glob("*.[jp][pn]g"))
RAW_TOLERANCE = 1e-3
SCORE_TOLERANCE = 0.01
MIN_BOX_IOU = 0.95
MIN_DESCRIPTOR_COSINE = 0.999
FACE_MODELS = ("blazeface", "faceres")


def raw_outputs(detector: OnnxDetector) -> dict[tuple[int, ...], list[np.ndarray]]:
    """All outputs for the frame last given to detect(), keyed by shape (names may differ between builds)."""
    names = [arg.name for arg in detector.session.get_outputs()]
    values = detector.session.run(names, {detector.input_name: detector.input_buffer})
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for _name, value in sorted(zip(names, values), key=lambda pair: pair[0]):
        by_shape.setdefault(value.shape, []).append(value)
    return by_shape


def largest_raw_difference(committed: OnnxDetector, rebuilt: OnnxDetector) -> float:
    expected, actual = raw_outputs(committed), raw_outputs(rebuilt)
    if sorted(expected) != sorted(actual):
        raise SystemExit(f"output shapes differ: committed {sorted(expected)}, rebuilt {sorted(actual)}")
    return max(
        float(np.abs(a - b).max()) for shape in expected for a, b in zip(expected[shape], actual[shape])
    )


def detections_match(expected: Detections, actual: Detections) -> str | None:
    """None when both found the same objects, else what differs."""
    if len(expected) != len(actual) or not np.array_equal(expected.class_ids, actual.class_ids):
        return f"labels differ: {expected.labels()} vs {actual.labels()}"
    if len(expected) and np.abs(expected.scores - actual.scores).max() > SCORE_TOLERANCE:
        return f"scores differ: {expected.scores.round(3)} vs {actual.scores.round(3)}"
    for box, other in zip(expected.boxes, actual.boxes):
        if box_iou(box, other[None])[0] < MIN_BOX_IOU:
            return f"box {box.round(1)} moved to {other.round(1)}"
    return None


def verify(name: str, committed_path: Path, rebuilt_path: Path) -> bool:
    committed = load_detector(committed_path)
    rebuilt = load_detector(rebuilt_path)
    assert isinstance(committed, OnnxDetector) and isinstance(rebuilt, OnnxDetector)
    if type(committed) is not type(rebuilt):
        print(f"FAIL {name}: decoded as {type(rebuilt).__name__}, committed as {type(committed).__name__}")
        return False
    ok = True
    for image_path in IMAGES:
        frame = cv2.imread(str(image_path))
        expected, actual = committed.detect(frame), rebuilt.detect(frame)
        difference = largest_raw_difference(committed, rebuilt)
        problem = detections_match(expected, actual)
        if difference > RAW_TOLERANCE and problem is None:
            problem = f"raw outputs differ by up to {difference:.2g}"
        status = "ok  " if problem is None else "FAIL"
        print(f"{status} {name} {image_path.name}: {len(actual)} detections, raw diff {difference:.2g}"
              + (f" ({problem})" if problem else ""))
        ok &= problem is None
    return ok


def verify_face_model(name: str, committed_path: Path, rebuilt_path: Path, models_dir: Path) -> bool:
    """BlazeFace: same faces on every photo. FaceRes: same descriptor for each face the committed BlazeFace finds."""
    finder = BlazeFaceDetector(models_dir / "blazeface.onnx")
    if name == "blazeface":
        committed, rebuilt = finder, BlazeFaceDetector(rebuilt_path)
    else:
        committed_describer, rebuilt_describer = FaceResDescriber(committed_path), FaceResDescriber(rebuilt_path)
    ok = True
    for image_path in IMAGES:
        frame = cv2.imread(str(image_path))
        problem = None
        if name == "blazeface":
            expected, actual = committed.detect(frame), rebuilt.detect(frame)
            if len(expected) != len(actual):
                problem = f"{len(expected)} faces vs {len(actual)}"
            for face, other in zip(expected, actual):
                iou = box_iou(np.array(face.box), np.array([other.box]))[0]
                if iou < MIN_BOX_IOU or abs(face.score - other.score) > SCORE_TOLERANCE:
                    problem = f"face {np.round(face.box, 1)} ({face.score:.3f}) became {np.round(other.box, 1)} ({other.score:.3f})"
            detail = f"{len(actual)} faces"
        else:
            faces = finder.detect(frame)
            cosines = [float(committed_describer.describe(frame, face.box) @ rebuilt_describer.describe(frame, face.box))
                       for face in faces]
            if cosines and min(cosines) < MIN_DESCRIPTOR_COSINE:
                problem = f"descriptor cosine {min(cosines):.4f} < {MIN_DESCRIPTOR_COSINE}"
            detail = f"{len(faces)} descriptors, lowest cosine {min(cosines, default=1.0):.5f}"
        print(f"{'ok  ' if problem is None else 'FAIL'} {name} {image_path.name}: {detail}" + (f" ({problem})" if problem else ""))
        ok &= problem is None
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare rebuilt ONNX detectors with the committed ones.")
    parser.add_argument("rebuilt_dir", type=Path)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--names", nargs="+", default=["nanodet", "centernet", *FACE_MODELS])
    args = parser.parse_args()
    results = [
        verify_face_model(name, args.models_dir / f"{name}.onnx", args.rebuilt_dir / f"{name}.onnx", args.models_dir)
        if name in FACE_MODELS else verify(name, args.models_dir / f"{name}.onnx", args.rebuilt_dir / f"{name}.onnx")
        for name in args.names
    ]
    if not all(results):
        raise SystemExit("Rebuilt models do not match the committed ones; see FAIL lines above.")
    print("All rebuilt models match the committed ones.")


if __name__ == "__main__":
    main()
