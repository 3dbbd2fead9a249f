"""Pick ONNX Runtime execution providers: TensorRT, then CUDA, then CPU, from what this install offers.

The list returned here is what we ask for; ONNX Runtime may still fall back (e.g. TensorRT libraries
missing at run time), so callers log `session.get_providers()` to say what actually runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE_ORDER: tuple[str, ...] = (TENSORRT, CUDA, CPU)

ProviderSpec = str | tuple[str, dict[str, object]]


def default_engine_cache_dir() -> Path:
    """Where TensorRT keeps built engines between runs (building one takes minutes)."""
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "hybridcam" / "tensorrt"


@dataclass(frozen=True)
class ProviderChoice:
    """Providers to hand to onnxruntime.InferenceSession, plus one line saying what was chosen and why."""

    providers: list[ProviderSpec]
    description: str

    @property
    def names(self) -> list[str]:
        return [spec if isinstance(spec, str) else spec[0] for spec in self.providers]


def tensorrt_options(engine_cache_dir: Path, fp16: bool, device_id: int) -> dict[str, object]:
    return {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engine_cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(engine_cache_dir),
    }


def cuda_options(device_id: int) -> dict[str, object]:
    return {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"}


def choose_providers(
    allowed: Sequence[str] | None = None,
    engine_cache_dir: Path | None = None,
    fp16: bool = True,
    device_id: int = 0,
    available: Sequence[str] | None = None,
) -> ProviderChoice:
    """Choose providers in the order TensorRT -> CUDA -> CPU among those available (and allowed).

    allowed: provider names the operator permits (e.g. only CPU); None allows all three.
    available: what onnxruntime offers; read from onnxruntime.get_available_providers() when None.
    """
    offered = set(ort.get_available_providers() if available is None else available)
    permitted = set(PREFERENCE_ORDER if allowed is None else allowed)
    unknown = permitted - set(PREFERENCE_ORDER)
    if unknown:
        raise ValueError(
            f"Unknown execution provider(s) {sorted(unknown)}; choose from {list(PREFERENCE_ORDER)}."
        )
    cache_dir = engine_cache_dir or default_engine_cache_dir()
    providers: list[ProviderSpec] = []
    notes: list[str] = []
    if TENSORRT in offered and TENSORRT in permitted:
        cache_dir.mkdir(parents=True, exist_ok=True)
        providers.append((TENSORRT, tensorrt_options(cache_dir, fp16, device_id)))
        notes.append(f"TensorRT ({'FP16' if fp16 else 'FP32'}, engine cache {cache_dir})")
    if CUDA in offered and CUDA in permitted:
        providers.append((CUDA, cuda_options(device_id)))
        notes.append(f"CUDA (device {device_id})")
    # CPU is always the last resort: ONNX Runtime needs it for any node the GPU providers reject.
    providers.append(CPU)
    notes.append("CPU")
    skipped = [name for name in PREFERENCE_ORDER[:2] if name not in offered]
    reason = f"; not in this onnxruntime build: {', '.join(skipped)}" if skipped else ""
    return ProviderChoice(providers=providers, description=f"requested {' -> '.join(notes)}{reason}")
