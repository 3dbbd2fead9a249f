"""Convert one TF.js graph model (model.json + .bin) to ONNX with tf2onnx; build-time only.

Runs inside the throwaway venv made by rebuild_models.sh (needs tensorflow-cpu and tf2onnx, never
installed in the product). Usage:

    python convert_tfjs_model.py MODEL.json OUTPUT.onnx [--restore-default-attrs] [--opset 17]

--restore-default-attrs: the TF.js converter strips node attributes that equal their default.
tf2onnx needs some of them back (CenterNet fails without): fused ops get TArgs (one DT_FLOAT per
extra argument) and every other missing attribute gets the default from TensorFlow's op definition.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

# tf2onnx 1.17 still calls np.product, which numpy 2 removed.
if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

FUSED_OPS_WITH_TARGS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"}
# TF.js names an op that TensorFlow registers under a leading underscore.
TFJS_TO_TF_OP = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}
BASE_INPUTS_OF_FUSED_OP = 2  # input and filter (or a and b); the rest are fused arguments such as a bias


def fused_argument_count(node: dict) -> int:
    attrs = node.get("attr", {})
    if "num_args" in attrs:
        return int(attrs["num_args"].get("i", 0))
    data_inputs = [name for name in node.get("input", []) if not name.startswith("^")]
    return max(0, len(data_inputs) - BASE_INPUTS_OF_FUSED_OP)


def restore_default_attrs(graph_nodes: list[dict]) -> int:
    """Fill in attributes TF.js left out; returns how many were added."""
    from google.protobuf.json_format import MessageToDict
    from tensorflow.python.framework import op_def_registry

    added = 0
    for node in graph_nodes:
        attrs = node.setdefault("attr", {})
        if node["op"] in FUSED_OPS_WITH_TARGS and "TArgs" not in attrs:
            attrs["TArgs"] = {"list": {"type": ["DT_FLOAT"] * fused_argument_count(node)}}
            added += 1
        op_def = op_def_registry.get(TFJS_TO_TF_OP.get(node["op"], node["op"]))
        if op_def is None:
            continue
        for attr_def in op_def.attr:
            if attr_def.name not in attrs and attr_def.HasField("default_value"):
                attrs[attr_def.name] = MessageToDict(attr_def.default_value)
                added += 1
    return added


def convert(model_json: Path, output: Path, opset: int, restore_defaults: bool) -> None:
    import tf2onnx.convert

    with tempfile.TemporaryDirectory() as scratch:
        source = model_json
        if restore_defaults:
            model = json.loads(model_json.read_text())
            added = restore_default_attrs(model["modelTopology"]["node"])
            for function in model["modelTopology"].get("library", {}).get("function", []):
                added += restore_default_attrs(function.get("nodeDef", []))
            print(f"restored {added} default attributes in {model_json.name}")
            # The weights manifest names .bin files relative to the JSON, so keep them side by side.
            for weights_group in model["weightsManifest"]:
                for weights_file in weights_group["paths"]:
                    shutil.copy(model_json.parent / weights_file, Path(scratch) / weights_file)
            source = Path(scratch) / model_json.name
            source.write_text(json.dumps(model))
        sys.argv = [
            "tf2onnx.convert", "--tfjs", str(source), "--output", str(output), "--opset", str(opset),
        ]
        tf2onnx.convert.main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--restore-default-attrs", action="store_true")
    args = parser.parse_args()
    convert(args.model_json, args.output, args.opset, args.restore_default_attrs)
    if not args.output.is_file():
        sys.exit(f"tf2onnx wrote no {args.output}.")


if __name__ == "__main__":
    main()
