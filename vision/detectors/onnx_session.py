"""Open an ONNX Runtime session for a detector with the team's session options and clear load errors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from vision.detectors.base import ModelLoadError
from vision.detectors.openvino_session import OpenVinoSession, OpenVinoTarget, open_openvino_session
from vision.providers import ProviderChoice, ProviderSpec, choose_providers


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def session_options(intra_op_num_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_num_threads or usable_cores()
    options.log_severity_level = 3  # warnings about unused initialisers etc. are noise per start
    return options


def open_session(
    model_path: str | os.PathLike[str],
    providers: Sequence[ProviderSpec] | ProviderChoice | OpenVinoTarget | None = None,
    intra_op_num_threads: int | None = None,
) -> ort.InferenceSession | OpenVinoSession:
    """Open the model, raising ModelLoadError (one sentence) if it is missing or not ONNX."""
    if isinstance(providers, OpenVinoTarget):
        return open_openvino_session(model_path, providers)
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist.")
    if providers is None:
        providers = choose_providers()
    provider_list = providers.providers if isinstance(providers, ProviderChoice) else list(providers)
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(intra_op_num_threads), providers=provider_list
        )
    except Exception as exc:  # onnxruntime raises its own pybind classes for every kind of bad file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"Model file {path} is not a loadable ONNX model ({first_line[:200]})."
        ) from exc


def input_specs(session: ort.InferenceSession) -> list[TensorSpec]:
    return [TensorSpec(arg.name, tuple(arg.shape)) for arg in session.get_inputs()]


def output_specs(session: ort.InferenceSession) -> list[TensorSpec]:
    return [TensorSpec(arg.name, tuple(arg.shape)) for arg in session.get_outputs()]
