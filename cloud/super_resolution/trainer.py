"""The content-adaptive trainer (LiveNAS): fine-tunes the network on the site's newest patches.

Each patch is a full-quality piece of a frame the edge found to lose much more than the frame as a
whole when shrunk and compressed for the uplink. The trainer applies that same degradation
(shared/uplink.py) to make the low-quality input, and learns the residual between the bicubic
upscale of it and the patch. Training runs in rounds; after each round the network is exported to
ONNX for the processor. Patches are kept in a bounded replay buffer, newest first, so the network
follows the scene as it changes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud.super_resolution.network import NetworkShape, Params, depth_to_space_crd, initial_params
from cloud.super_resolution.onnx_export import export_onnx
from shared.uplink import UplinkQuality, degrade, upscale_bicubic

log = logging.getLogger("super_resolution.trainer")


@dataclass(frozen=True, slots=True)
class TrainingPair:
    lr: np.ndarray
    """shrunk, compressed and decoded patch: float32 [3, h, w], 0-1"""
    residual: np.ndarray
    """what bicubic misses: float32 [3, h*factor, w*factor], 0-1 units"""


def training_pair(patch: np.ndarray, quality: UplinkQuality) -> TrainingPair:
    """The low-quality input and the target residual for one full-quality BGR patch."""
    height, width = patch.shape[:2]
    decoded, _ = degrade(patch, quality)
    base = upscale_bicubic(decoded, width, height)
    lr = decoded.transpose(2, 0, 1).astype(np.float32) / 255.0
    residual = (patch.astype(np.float32) - base.astype(np.float32)).transpose(2, 0, 1) / 255.0
    return TrainingPair(lr, residual)


class OnlineTrainer:
    """Rounds of Adam steps on a replay buffer of the newest patches."""

    def __init__(self, shape: NetworkShape | None = None, learning_rate: float = 1e-3, batch: int = 16,
                 buffer_patches: int = 1024, seed: int = 0, params: Params | None = None) -> None:
        import jax
        import optax

        self.shape = shape or NetworkShape()
        self.batch = batch
        self.buffer: deque[TrainingPair] = deque(maxlen=buffer_patches)
        self.patches_seen = 0
        self.patches_refused = 0
        self.steps = 0
        self.rounds = 0
        self._rng = np.random.default_rng(seed)
        self._optimizer = optax.adam(learning_rate)
        self._params: Any = jax.tree_util.tree_map(jax.numpy.asarray, params or initial_params(self.shape, seed))
        self._opt_state = self._optimizer.init(self._params)
        self._step = jax.jit(self._make_step())
        self._patch_size: tuple[int, int] | None = None

    def add(self, patches: Sequence[np.ndarray], quality: UplinkQuality) -> int:
        """Queue full-quality patches for training; one of another size than the first is refused (counted)."""
        if quality.factor != self.shape.factor:
            raise ValueError(f"patches degraded by 1/{quality.factor} cannot train a x{self.shape.factor} network")
        added = 0
        for patch in patches:
            size = patch.shape[:2]
            if self._patch_size is None:
                self._patch_size = (int(size[0]), int(size[1]))
            if size != self._patch_size or size[0] % quality.factor or size[1] % quality.factor:
                self.patches_refused += 1
                continue
            self.buffer.append(training_pair(patch, quality))
            added += 1
        self.patches_seen += added
        return added

    def train_round(self, steps: int) -> float:
        """``steps`` Adam steps on random batches of the buffer; the mean loss (0 when it is empty)."""
        if not self.buffer:
            return 0.0
        losses = []
        for _ in range(steps):
            chosen = self._rng.integers(0, len(self.buffer), min(self.batch, len(self.buffer)))
            lr = np.stack([self.buffer[i].lr for i in chosen])
            target = np.stack([self.buffer[i].residual for i in chosen])
            self._params, self._opt_state, loss = self._step(self._params, self._opt_state, lr, target)
            losses.append(float(loss))
        self.steps += steps
        self.rounds += 1
        return float(np.mean(losses))

    def params(self) -> Params:
        return {name: np.asarray(value) for name, value in self._params.items()}

    def export(self) -> bytes:
        """The network as the processor's ONNX model."""
        return export_onnx(self.params(), self.shape)

    def _make_step(self) -> Any:
        import jax
        import jax.numpy as jnp
        import optax

        shape = self.shape
        optimizer = self._optimizer

        def forward(params: Any, lr: Any) -> Any:
            x = lr
            names = [name for name, *_ in shape.kernels()]
            for index, name in enumerate(names):
                x = jax.lax.conv_general_dilated(x, params[f"{name}.weight"], (1, 1), "SAME",
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                x = x + params[f"{name}.bias"][None, :, None, None]
                if index < len(names) - 1:
                    x = jax.nn.relu(x)
            return depth_to_space_crd(x, shape.factor)

        def loss_fn(params: Any, lr: Any, target: Any) -> Any:
            return jnp.mean((forward(params, lr) - target) ** 2)

        def step(params: Any, opt_state: Any, lr: Any, target: Any) -> Any:
            loss, grads = jax.value_and_grad(loss_fn)(params, lr, target)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return step
