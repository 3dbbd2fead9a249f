"""How a detector plugs in: its settings model (keyed by ``type``) and how it is built.

One file per detector declares a :class:`DetectorConfig` subclass with ``type: Literal["name"]``
and calls :func:`register_detector` at import time; vision/detectors/registry.py imports the
built-in ones, turns every registered settings model into one typed union keyed by ``type`` and
builds detectors from it. A detector for a single ONNX model says which tensor layout it
recognises (``match``), so the ``auto`` type can pick it from the model's shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from vision.detectors.base import Detector
from vision.detectors.onnx_session import TensorSpec
from vision.detectors.openvino_session import OpenVinoTarget
from vision.providers import ProviderChoice, ProviderSpec

Providers = Sequence[ProviderSpec] | ProviderChoice | OpenVinoTarget | None


class DetectorConfig(BaseModel):
    """Settings every detector has: its type. Subclasses add theirs; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class OnnxModelConfig(DetectorConfig):
    """Settings of a detector around one ONNX model (a short name in the models folder or a path)."""

    model: str = Field(description="model name in the models folder (nanodet, centernet) or a path to an .onnx file")
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0)
    max_detections: int = Field(100, ge=1)
    labels: tuple[str, ...] | None = Field(None, description="class names (default: the 80 COCO classes)")
    input_size: int | None = Field(None, ge=32, description="input side for exports with dynamic axes (YOLO; default 640)")
    num_classes: int | None = Field(None, ge=1, description="class count of the head (NanoDet; default: number of labels)")


@dataclass(frozen=True)
class DetectorRuntime:
    """Where and how models run: execution providers, threads, the models folder, and a loader for composites."""

    providers: Providers
    intra_op_num_threads: int | None
    models_dir: Path
    load: Callable[[DetectorConfig], Detector]


@dataclass(frozen=True)
class DetectorPlugin:
    """A registered detector type: ``name`` is the ``type`` its settings carry.

    Single-model detectors give ``match`` (tensor layout recogniser, None when the model is not
    theirs) and ``create`` (detector from an open session); composites give ``build`` instead.
    """

    name: str
    config_model: type[DetectorConfig]
    layout: str = ""
    match: Callable[[Sequence[TensorSpec], Sequence[TensorSpec], Any], Any | None] | None = None
    create: Callable[[ort.InferenceSession, Path, Any, Any], Detector] | None = None
    build: Callable[[Any, DetectorRuntime], Detector] | None = None


_PLUGINS: dict[str, DetectorPlugin] = {}


def register_detector(plugin: DetectorPlugin) -> DetectorPlugin:
    """Make a detector type known; a second plugin of the same type replaces the first."""
    if (plugin.build is None) == (plugin.create is None or plugin.match is None):
        raise ValueError(f"detector plugin {plugin.name!r} needs either match + create or build")
    _PLUGINS[plugin.name] = plugin
    return plugin


def detector_plugins() -> dict[str, DetectorPlugin]:
    """The registered detector types, in registration order (the order ``auto`` tries them)."""
    return dict(_PLUGINS)


class AutoConfig(OnnxModelConfig):
    """Any single-model detector: the type is picked from the model's input and output shapes."""

    type: Literal["auto"] = "auto"
