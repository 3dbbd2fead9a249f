"""The trained network as the ONNX graph the processor runs (vision/super_resolution.py)."""

from __future__ import annotations

import numpy as np

from cloud.super_resolution.network import NetworkShape, Params

OPSET = 17


def export_onnx(params: Params, shape: NetworkShape) -> bytes:
    """``lr`` [1, 3, h, w] -> ``residual`` [1, 3, h*factor, w*factor]; any h and w."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    initializers = []
    current = "lr"
    for index, (name, k, _cin, _cout) in enumerate(shape.kernels()):
        weight, bias = f"{name}.weight", f"{name}.bias"
        initializers += [numpy_helper.from_array(np.asarray(params[weight], np.float32), weight),
                         numpy_helper.from_array(np.asarray(params[bias], np.float32), bias)]
        out = f"{name}.out"
        nodes.append(helper.make_node("Conv", [current, weight, bias], [out], kernel_shape=[k, k], pads=[k // 2] * 4))
        current = out
        if index < len(shape.kernels()) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"{name}.relu"]))
            current = f"{name}.relu"
    nodes.append(helper.make_node("DepthToSpace", [current], ["residual"], blocksize=shape.factor, mode="CRD"))
    graph = helper.make_graph(
        nodes, "super_resolution",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("residual", TensorProto.FLOAT, [1, 3, "H", "W"])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybridcam")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
