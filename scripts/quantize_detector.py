"""Build models/nanodet-int8.onnx from models/nanodet.onnx: static int8 (QDQ) calibrated on real frames.

Steps, each reproducible from committed inputs:
1. fold the -inf Pad in front of the stem MaxPool into the MaxPool's own padding (MaxPool pads
   with -inf by definition, so outputs are identical; left in place, the -inf values make the
   quantizer's scales infinite);
2. constant-fold the graph with onnxruntime's basic optimisation (turns the ScatterND with scalar
   indices into a constant, which OpenVINO cannot read otherwise; outputs identical);
3. quantize statically to QDQ: int8 per-channel weights, uint8 activations, calibrated on the
   frames in models/calibration/ (real footage, preprocessed exactly as the detector does);
4. check the result against FP32 on the held-out clip cuts in tests/data/clips/ and print person
   recall, precision and box-count difference (IoU 0.5) for several int8 score thresholds.

Build-time needs: the `onnx` package (in the dev extra). The running service needs neither.

Usage: python scripts/quantize_detector.py [--model models/nanodet.onnx] [--output models/nanodet-int8.onnx]
       python scripts/quantize_detector.py --cut-calibration-frames VIDEO_DIR   (re-cut models/calibration/)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from services.edge_infer.detector_agreement import agreement_on_frames, read_clip_frames  # noqa: E402
from vision.detectors.nanodet import BGR_MEAN, BGR_STD  # noqa: E402

DEFAULT_MODEL = REPO_ROOT / "models" / "nanodet.onnx"
DEFAULT_OUTPUT = REPO_ROOT / "models" / "nanodet-int8.onnx"
CALIBRATION_DIR = REPO_ROOT / "models" / "calibration"
CHECK_CLIPS = sorted((REPO_ROOT / "tests" / "data" / "clips").glob("*.mp4"))
CHECK_THRESHOLDS = (0.30, 0.35, 0.40)
FP32_THRESHOLD = 0.35

# (clip, first frame, last frame, step): the committed calibration frames; none of them lies in
# the clip cuts used to check the result (tests/data/clips/).
CALIBRATION_CUTS = (
    ("one-by-one-person-detection.mp4", 300, 300, 1),  # empty room
    ("one-by-one-person-detection.mp4", 440, 440, 1),
    ("one-by-one-person-detection.mp4", 1110, 1250, 20),
    ("car-detection.mp4", 60, 300, 120),
    ("worker-zone-detection.gif", 0, 70, 6),
    ("face-demographics-walking.gif", 0, 34, 4),
)


def fold_pad_into_maxpool(model) -> int:  # noqa: ANN001 (onnx.ModelProto; onnx is a build-time import)
    """Replace Pad(-inf) -> MaxPool by MaxPool with pads; return how many were folded."""
    from onnx import helper, numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded = 0
    for pool in [node for node in model.graph.node if node.op_type == "MaxPool"]:
        pad = producers.get(pool.input[0])
        if pad is None or pad.op_type != "Pad" or consumers.get(pad.output[0], 0) != 1:
            continue
        value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else None
        pads = constants.get(pad.input[1])
        if value is None or pads is None or not np.isneginf(value).all():
            continue
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        if begin[:2].any() or end[:2].any() or any(a.name == "pads" for a in pool.attribute):
            continue  # padding of batch or channels, or a pool that already pads: not this pattern
        pool.attribute.append(helper.make_attribute("pads", [int(v) for v in (*begin[2:], *end[2:])]))
        pool.input[0] = pad.input[0]
        model.graph.node.remove(pad)
        folded += 1
    return folded


def constant_fold(source: Path, target: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def nanodet_input(frame: np.ndarray, size: int) -> np.ndarray:
    """The detector's preprocessing (stretch, BGR, (x - mean) / std, NCHW) for one frame."""
    resized = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((resized - BGR_MEAN) / BGR_STD).transpose(2, 0, 1)[None]


class FrameCalibrationReader:
    """onnxruntime.quantization CalibrationDataReader over a folder of images."""

    def __init__(self, frames_dir: Path, input_name: str, size: int) -> None:
        self.paths = sorted(frames_dir.glob("*.jpg"))
        if not self.paths:
            raise SystemExit(f"No calibration frames (*.jpg) in {frames_dir}.")
        self.input_name = input_name
        self.size = size
        self._iterator: Iterator[Path] = iter(self.paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._iterator, None)
        if path is None:
            return None
        return {self.input_name: nanodet_input(cv2.imread(str(path)), self.size)}

    def rewind(self) -> None:
        self._iterator = iter(self.paths)


def quantize(model_path: Path, output: Path, frames_dir: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(model_path))
    folded = fold_pad_into_maxpool(model)
    print(f"folded {folded} -inf Pad node(s) into MaxPool")
    input_name = model.graph.input[0].name
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    with tempfile.TemporaryDirectory() as work:
        padded = Path(work) / "folded-pad.onnx"
        folded_graph = Path(work) / "folded.onnx"
        onnx.save(model, str(padded))
        constant_fold(padded, folded_graph)
        scatters = sum(node.op_type == "ScatterND" for node in onnx.load(str(folded_graph)).graph.node)
        print(f"constant-folded with onnxruntime basic optimisation; ScatterND left: {scatters}")
        reader = FrameCalibrationReader(frames_dir, input_name, size)
        print(f"calibrating on {len(reader.paths)} frames from {frames_dir.relative_to(REPO_ROOT)} ...")
        quantize_static(
            str(folded_graph),
            str(output),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB)")


def check(model_path: Path, output: Path) -> None:
    """Print how the int8 model's people compare with FP32's on the held-out clip cuts."""
    from vision.detectors.registry import load_detector

    frames = [frame for clip in CHECK_CLIPS for frame in read_clip_frames(clip)]
    if not frames:
        print("no clip cuts in tests/data/clips/: accuracy check skipped")
        return
    reference = load_detector(model_path, score_threshold=FP32_THRESHOLD)
    print(f"int8 vs FP32 (threshold {FP32_THRESHOLD}) on {len(frames)} frames of "
          f"{', '.join(clip.name for clip in CHECK_CLIPS)}, people, IoU 0.5:")
    for threshold in CHECK_THRESHOLDS:
        candidate = load_detector(output, score_threshold=threshold)
        result = agreement_on_frames(reference, candidate, frames)
        print(f"  int8 threshold {threshold:.2f}: {result.describe()}")


def cut_calibration_frames(video_dir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for clip, first, last, step in CALIBRATION_CUTS:
        wanted = set(range(first, last + 1, step))
        capture = cv2.VideoCapture(str(video_dir / clip))
        index = 0
        while wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                wanted.discard(index)
                name = f"{Path(clip).stem}-{index:04d}.jpg"
                cv2.imwrite(str(target / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
                written += 1
            index += 1
        capture.release()
    print(f"wrote {written} calibration frames to {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="FP32 NanoDet ONNX model")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the int8 model")
    parser.add_argument("--frames", type=Path, default=CALIBRATION_DIR, help="folder of calibration JPEGs")
    parser.add_argument("--cut-calibration-frames", type=Path, metavar="VIDEO_DIR",
                        help="re-cut the calibration frames from the sample clips in VIDEO_DIR, then stop")
    parser.add_argument("--no-check", action="store_true", help="skip the accuracy check against FP32")
    args = parser.parse_args()
    if args.cut_calibration_frames:
        cut_calibration_frames(args.cut_calibration_frames, args.frames)
        return
    if not args.model.is_file():
        raise SystemExit(f"Model {args.model} does not exist.")
    quantize(args.model.resolve(), args.output.resolve(), args.frames.resolve())
    if not args.no_check:
        check(args.model, args.output)


if __name__ == "__main__":
    main()
