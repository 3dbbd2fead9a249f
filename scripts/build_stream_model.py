"""Build a tiny causal video classifier in ONNX with the interface of a MoViNet *stream* export, and the
same network as a whole-clip model; random weights (it tests the mechanics, never accuracy).

Stream model (what the ``movinet-stream`` detector runs, docs/actions.md):
  inputs  ``image`` float32 [1, 1, H, W, 3] RGB 0..1, and state tensors (zeros at the start):
          ``state/stream_buffer`` [1, K-1, F] (the last K-1 frame features: a causal temporal convolution),
          ``state/pool_sum`` [1, D] and ``state/pool_frame_count`` int32 [1] (a cumulative average pool);
  outputs ``logits`` [1, C] and each state's next value, named ``<state>_out``.
Clip model: input ``image`` [1, T, H, W, 3], output ``logits`` [1, T, C]: the logits after each frame, from
the same weights; frame-by-frame stream inference must equal it.

Usage: python scripts/build_stream_model.py OUT_DIR [--seed 0] [--side 32] [--classes 5]
Writes OUT_DIR/movinet-stream-tiny.onnx and OUT_DIR/movinet-clip-tiny.onnx (a few KB each).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8  # F: per-frame feature width
KERNEL = 3  # K: frames the causal convolution sees
HIDDEN = 16  # D
OPSET = 17


def weights(seed: int, classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w_in": rng.normal(0, 1.0, (3, FEATURES)).astype(np.float32),
        "b_in": rng.normal(0, 0.1, FEATURES).astype(np.float32),
        "w_conv": rng.normal(0, 0.5, (HIDDEN, FEATURES, KERNEL)).astype(np.float32),  # [D, F, K], oldest frame first
        "b_conv": rng.normal(0, 0.1, HIDDEN).astype(np.float32),
        "w_out": rng.normal(0, 0.5, (HIDDEN, classes)).astype(np.float32),
        "b_out": rng.normal(0, 0.1, classes).astype(np.float32),
    }


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _frame_features(image: str, axes: list[int], w: dict[str, np.ndarray], nodes: list, inits: list) -> str:
    """Mean colour of each frame through a small dense layer with tanh."""
    inits += [_const("w_in", w["w_in"]), _const("b_in", w["b_in"])]
    nodes += [helper.make_node("ReduceMean", [image], ["colour"], axes=axes, keepdims=0),
              helper.make_node("MatMul", ["colour", "w_in"], ["feat_lin"]),
              helper.make_node("Add", ["feat_lin", "b_in"], ["feat_pre"]),
              helper.make_node("Tanh", ["feat_pre"], ["feat"])]
    return "feat"


def stream_model(w: dict[str, np.ndarray], side: int, classes: int) -> onnx.ModelProto:
    nodes: list = []
    inits: list = []
    feat = _frame_features("image", [1, 2, 3], w, nodes, inits)  # [1, F]
    flat_conv = w["w_conv"].transpose(2, 1, 0).reshape(KERNEL * FEATURES, HIDDEN)  # window index k*F + f
    inits += [_const("w_conv_flat", flat_conv), _const("b_conv", w["b_conv"]), _const("w_out", w["w_out"]),
              _const("b_out", w["b_out"]), _const("axis1", np.array([1], np.int64)),
              _const("flat_shape", np.array([1, KERNEL * FEATURES], np.int64)), _const("one_i", np.array([1], np.int32)),
              _const("slice_start", np.array([1], np.int64)), _const("slice_end", np.array([KERNEL], np.int64))]
    nodes += [
        helper.make_node("Unsqueeze", [feat, "axis1"], ["feat_t"]),
        helper.make_node("Concat", ["state/stream_buffer", "feat_t"], ["window"], axis=1),  # [1, K, F]
        helper.make_node("Slice", ["window", "slice_start", "slice_end", "axis1"], ["state/stream_buffer_out"]),
        helper.make_node("Reshape", ["window", "flat_shape"], ["window_flat"]),
        helper.make_node("MatMul", ["window_flat", "w_conv_flat"], ["conv_lin"]),
        helper.make_node("Add", ["conv_lin", "b_conv"], ["conv_pre"]),
        helper.make_node("Relu", ["conv_pre"], ["hidden"]),
        helper.make_node("Add", ["state/pool_sum", "hidden"], ["state/pool_sum_out"]),
        helper.make_node("Add", ["state/pool_frame_count", "one_i"], ["state/pool_frame_count_out"]),
        helper.make_node("Cast", ["state/pool_frame_count_out"], ["count_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["state/pool_sum_out", "count_f"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w_out"], ["logits_lin"]),
        helper.make_node("Add", ["logits_lin", "b_out"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, side, side, 3]),
              helper.make_tensor_value_info("state/stream_buffer", TensorProto.FLOAT, [1, KERNEL - 1, FEATURES]),
              helper.make_tensor_value_info("state/pool_sum", TensorProto.FLOAT, [1, HIDDEN]),
              helper.make_tensor_value_info("state/pool_frame_count", TensorProto.INT32, [1])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes]),
               helper.make_tensor_value_info("state/stream_buffer_out", TensorProto.FLOAT, [1, KERNEL - 1, FEATURES]),
               helper.make_tensor_value_info("state/pool_sum_out", TensorProto.FLOAT, [1, HIDDEN]),
               helper.make_tensor_value_info("state/pool_frame_count_out", TensorProto.INT32, [1])]
    graph = helper.make_graph(nodes, "movinet_stream_tiny", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybridcam")


def clip_model(w: dict[str, np.ndarray], side: int, classes: int) -> onnx.ModelProto:
    nodes: list = []
    inits: list = []
    feat = _frame_features("image", [2, 3], w, nodes, inits)  # [1, T, F]
    inits += [_const("w_conv", w["w_conv"]), _const("b_conv", w["b_conv"]), _const("w_out", w["w_out"]),
              _const("b_out", w["b_out"]), _const("time_axis", np.array(1, np.int64)),
              _const("zero_f", np.array(0.0, np.float32)), _const("one_f", np.array(1.0, np.float32))]
    nodes += [
        helper.make_node("Transpose", [feat], ["feat_ft"], perm=[0, 2, 1]),  # [1, F, T]
        # Causal: K-1 zero frames in front, so the output at t sees frames t-K+1..t only.
        helper.make_node("Conv", ["feat_ft", "w_conv", "b_conv"], ["conv_pre"], pads=[KERNEL - 1, 0]),  # [1, D, T]
        helper.make_node("Relu", ["conv_pre"], ["hidden_dt"]),
        helper.make_node("Transpose", ["hidden_dt"], ["hidden"], perm=[0, 2, 1]),  # [1, T, D]
        helper.make_node("CumSum", ["hidden", "time_axis"], ["running_sum"]),
        helper.make_node("Mul", ["hidden", "zero_f"], ["zeros"]),
        helper.make_node("Add", ["zeros", "one_f"], ["ones"]),
        helper.make_node("CumSum", ["ones", "time_axis"], ["counts"]),
        helper.make_node("Div", ["running_sum", "counts"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w_out"], ["logits_lin"]),
        helper.make_node("Add", ["logits_lin", "b_out"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "frames", side, side, 3])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "frames", classes])]
    graph = helper.make_graph(nodes, "movinet_clip_tiny", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybridcam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", type=int, default=32, help="frame side the model takes")
    parser.add_argument("--classes", type=int, default=5)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    w = weights(args.seed, args.classes)
    for name, model in (("movinet-stream-tiny", stream_model(w, args.side, args.classes)),
                        ("movinet-clip-tiny", clip_model(w, args.side, args.classes))):
        onnx.checker.check_model(model)
        path = args.out_dir / f"{name}.onnx"
        onnx.save(model, str(path))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
