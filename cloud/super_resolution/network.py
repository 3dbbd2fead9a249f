"""An ESPCN-sized super-resolution network (Shi et al. 2016), residual over bicubic.

Three convolutions on the shrunk frame (5x5 -> ``features[0]``, 3x3 -> ``features[1]``, 3x3 ->
3*factor^2) and a pixel shuffle (ONNX DepthToSpace, CRD order) give a residual at full size; the
processor adds it to OpenCV's bicubic upscale (vision/super_resolution.py). The last layer starts
at zero, so an untrained network is exactly bicubic and training can only add to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class NetworkShape:
    factor: int = 2
    features: tuple[int, int] = (32, 16)

    def kernels(self) -> list[tuple[str, int, int, int]]:
        """(name, kernel size, input channels, output channels) per convolution."""
        first, second = self.features
        return [("conv1", 5, 3, first), ("conv2", 3, first, second), ("conv3", 3, second, 3 * self.factor**2)]


def initial_params(shape: NetworkShape, seed: int = 0) -> Params:
    """He-initialised weights (OIHW), zero biases, and a zero last layer (= bicubic)."""
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, k, cin, cout in shape.kernels():
        std = np.sqrt(2.0 / (k * k * cin))
        weight = rng.normal(0.0, std, (cout, cin, k, k)).astype(np.float32)
        params[f"{name}.weight"] = np.zeros_like(weight) if name == "conv3" else weight
        params[f"{name}.bias"] = np.zeros(cout, np.float32)
    return params


def depth_to_space_crd(x: np.ndarray, factor: int) -> np.ndarray:
    """ONNX DepthToSpace, mode CRD, for NCHW arrays (numpy or jax: only reshape and transpose)."""
    n, c, h, w = x.shape
    out_c = c // (factor * factor)
    x = x.reshape(n, out_c, factor, factor, h, w)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, out_c, h * factor, w * factor)
