"""The committed int8 NanoDet: built as the script says, and close to FP32 on real people."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.edge_infer.detector_agreement import agreement_on_frames, read_clip_frames
from vision.detectors.registry import load_detector

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from quantize_detector import fold_pad_into_maxpool  # noqa: E402

INT8 = REPO / "models" / "nanodet-int8.onnx"
CLIPS = sorted((REPO / "tests" / "data" / "clips").glob("*.mp4"))


def test_int8_model_is_quantized_without_the_two_traps() -> None:
    graph = onnx.load(str(INT8)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    assert "ScatterND" not in ops
    pool = next(node for node in graph.node if node.op_type == "MaxPool")
    assert [a.ints for a in pool.attribute if a.name == "pads"] == [[1, 1, 1, 1]]
    assert INT8.stat().st_size < 8_000_000


def test_int8_finds_the_people_fp32_finds_on_real_footage() -> None:
    frames = [frame for clip in CLIPS for frame in read_clip_frames(clip, step=4)]
    assert len(frames) >= 50
    result = agreement_on_frames(load_detector("nanodet"), load_detector("nanodet-int8"), frames)
    assert result.reference_boxes >= 50
    assert result.recall >= 0.95, result.describe()
    assert result.precision >= 0.9, result.describe()
    assert abs(result.count_difference_per_frame) <= 0.2, result.describe()


def test_folding_the_minus_inf_pad_into_maxpool_keeps_outputs() -> None:
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(-np.inf, np.float32), "value")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads", "value"], ["padded"]),
         helper.make_node("MaxPool", ["padded"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [pads, value],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = -np.random.default_rng(1).random((1, 2, 9, 9), np.float32)  # all negative: a 0 pad would show
    before = run(model, x)
    assert fold_pad_into_maxpool(model) == 1
    assert [node.op_type for node in model.graph.node] == ["MaxPool"]
    np.testing.assert_array_equal(run(model, x), before)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("name", ["nanodet", "nanodet-int8"])
def test_both_precisions_load_through_the_registry(name: str) -> None:
    detector = load_detector(name)
    assert detector.name == name and detector.input_size == (416, 416)
