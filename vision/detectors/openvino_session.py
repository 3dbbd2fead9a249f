"""Run a detector's ONNX model with the OpenVINO runtime behind the small part of the
onnxruntime.InferenceSession interface the decoders use (get_inputs, get_outputs, get_providers, run).

Several detectors opened on the same model and target share one compiled model, each with its own
infer request: that is how OpenVINO's THROUGHPUT hint keeps several requests in flight. A model
OpenVINO cannot read as is (the FP32 NanoDet's ScatterND with scalar indices) is constant-folded once
with onnxruntime's basic optimisation into a cache file, which gives an identical model it reads.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision.detectors.base import ModelLoadError

PROVIDER_PREFIX = "OpenVINO"


@dataclass(frozen=True)
class OpenVinoTarget:
    """Where and how OpenVINO runs a model.

    precision_hint: "f32", "bf16" or "" (OpenVINO's default for the device: bf16 where the CPU has it).
    performance_hint: "LATENCY" (one request, all cores) or "THROUGHPUT" (several requests in flight).
    """

    device: str = "CPU"
    precision_hint: str = "f32"
    performance_hint: str = "LATENCY"
    threads: int = 0
    cache_dir: Path | None = None

    def config(self) -> dict[str, str]:
        config = {"PERFORMANCE_HINT": self.performance_hint}
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config


@dataclass(frozen=True)
class _Arg:
    name: str
    shape: list[int | str | None]


def default_cache_dir() -> Path:
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "hybridcam" / "openvino"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


_compiled: dict[tuple[str, OpenVinoTarget], Any] = {}
_compile_lock = threading.Lock()


def compiled_model(path: Path, target: OpenVinoTarget) -> Any:
    """The compiled model for (path, target), compiled once per process."""
    key = (str(path.resolve()), target)
    with _compile_lock:
        if key not in _compiled:
            _compiled[key] = _compile(path, target)
        return _compiled[key]


def _compile(path: Path, target: OpenVinoTarget) -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise ModelLoadError("The OpenVINO back-end needs the `openvino` package (pip install openvino).") from None
    core = ov.Core()
    if target.device not in core.available_devices:
        raise ModelLoadError(f"OpenVINO has no {target.device} device here (it offers {core.available_devices}).")
    try:
        model = core.read_model(str(path))
    except Exception:  # noqa: BLE001 (OpenVINO raises a generic RuntimeError for unconverted operators)
        model = core.read_model(str(constant_folded_copy(path, target.cache_dir or default_cache_dir())))
    try:
        return core.compile_model(model, target.device, target.config())
    except Exception as exc:  # noqa: BLE001
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"OpenVINO cannot compile {path} for {target.device} ({first_line[:200]}).") from exc


def constant_folded_copy(path: Path, cache_dir: Path) -> Path:
    """An identical model with constant sub-graphs folded by onnxruntime, cached by content hash."""
    import onnxruntime as ort

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"{path.stem}-folded-{digest}.onnx"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(partial)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"Model file {path} is not a loadable ONNX model.") from exc
    partial.replace(target)
    return target


class OpenVinoSession:
    """One infer request on a shared compiled model, shaped like the onnxruntime session API we use."""

    def __init__(self, compiled: Any, target: OpenVinoTarget) -> None:
        self._request = compiled.create_infer_request()
        self._inputs = [_Arg(port.get_any_name(), _shape(port)) for port in compiled.inputs]
        self._outputs = [_Arg(port.get_any_name(), _shape(port)) for port in compiled.outputs]
        self.target = target
        self.optimal_requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.inference_precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        # The request's own input buffers, filled in place: infer() then runs without OpenVINO's per-call
        # Python input dispatch (where a restarted edge was once found hung, in a dtype conversion).
        self._input_views = {arg.name: self._request.get_tensor(arg.name).data for arg in self._inputs}

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [f"{PROVIDER_PREFIX}{self.target.device}"]

    def run(self, output_names: Sequence[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Infer synchronously (the GIL is released meanwhile); outputs are views valid until the next run."""
        views = [(self._input_views.get(name), value) for name, value in feed.items()]
        if all(view is not None and view.shape == value.shape and view.dtype == value.dtype for view, value in views):
            for view, value in views:
                np.copyto(view, value)  # type: ignore[arg-type]
            self._request.infer()
        else:  # a dynamic or differently typed input: OpenVINO's own dispatch
            self._request.infer(feed, share_inputs=True)
        names = output_names or [arg.name for arg in self._outputs]
        return [self._request.get_tensor(name).data for name in names]


def _shape(port: Any) -> list[int | str | None]:
    return [dim.get_length() if dim.is_static else None for dim in port.partial_shape]


def open_openvino_session(model_path: str | os.PathLike[str], target: OpenVinoTarget) -> OpenVinoSession:
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist.")
    return OpenVinoSession(compiled_model(path, target), target)
