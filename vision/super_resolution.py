"""Super-resolution processor: a low-quality frame -> the size it was taken at.

The network (trained online in the cloud from the site's own patches, cloud/super_resolution/)
predicts only what bicubic upscaling misses: its ONNX graph maps the shrunk, decoded frame
(``lr``: float32 [1, 3, h, w], BGR in 0-1) to a residual at ``factor`` times the size
(``residual``: [1, 3, h*factor, w*factor], in 0-1 units), and the processor adds it to OpenCV's
bicubic upscale. Without a model the processor is plain bicubic, so it never does worse than the
baseline it is measured against.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shared.uplink import upscale_bicubic

log = logging.getLogger("super_resolution")

INPUT_NAME = "lr"
OUTPUT_NAME = "residual"


class SuperResolution:
    """Upscales shrunk frames with the newest model it was given (bicubic until then)."""

    def __init__(self, model: bytes | Path | None = None, threads: int = 1) -> None:
        self.threads = threads
        self.session: object | None = None
        self.factor = 1
        self.version = ""
        if model is not None:
            self.load(model)

    def load(self, model: bytes | Path, version: str = "") -> None:
        """Use this ONNX model from now on; its upscale factor is read from its output shape."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        source = model.read_bytes() if isinstance(model, Path) else model
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
        if names != ({INPUT_NAME}, {OUTPUT_NAME}):
            raise ValueError(f"a super-resolution model takes {INPUT_NAME!r} and gives {OUTPUT_NAME!r}; this one has {names}")
        probe = np.zeros((1, 3, 8, 8), np.float32)
        factor = int(session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0].shape[2] // 8)
        if factor < 1:
            raise ValueError("a super-resolution model must not shrink its input")
        self.session, self.factor, self.version = session, factor, version

    @property
    def learnt(self) -> bool:
        return self.session is not None

    def upscale(self, image: np.ndarray, width: int | None = None, height: int | None = None) -> np.ndarray:
        """``image`` (BGR uint8) upscaled by the model's factor, or to ``width`` x ``height`` when given."""
        factor = self.factor if self.session is not None else 1
        out_w = width or image.shape[1] * factor
        out_h = height or image.shape[0] * factor
        base = upscale_bicubic(image, image.shape[1] * factor, image.shape[0] * factor)
        if self.session is not None:
            lr = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
            residual = self.session.run([OUTPUT_NAME], {INPUT_NAME: lr})[0][0]  # type: ignore[attr-defined]
            base = np.clip(base.astype(np.float32) + residual.transpose(1, 2, 0) * 255.0, 0, 255).astype(np.uint8)
        return upscale_bicubic(base, out_w, out_h)
