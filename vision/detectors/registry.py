"""Detectors by settings: one typed union of every registered detector's settings, keyed by ``type``.

Built-in types (one file each): "nanodet", "yolo", "centernet" (single ONNX models, recognised by
their tensor layouts) and "tiled" (the cloud tier: CenterNet on the full frame + NanoDet on tiles).
"auto" opens a model and picks the single-model type whose layout it has. Other detectors plug in
with :func:`vision.detectors.plugin.register_detector`.

:func:`load_detector` keeps the short form: a model name ("nanodet", "centernet": the models in
models/), an .onnx path (both "auto"), or "tiled", with the type's settings as keyword options.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from vision.detectors.base import Detector, ModelLoadError
from vision.detectors.onnx_session import TensorSpec, input_specs, open_session, output_specs
from vision.detectors.plugin import AutoConfig, DetectorConfig, DetectorRuntime, OnnxModelConfig, Providers, detector_plugins

# The built-in detectors, one module each; they register themselves on import, in the order "auto" tries them.
BUILT_IN_DETECTORS = ("vision.detectors.nanodet", "vision.detectors.centernet", "vision.detectors.yolo", "vision.detectors.tiled",
                      "vision.detectors.movinet_stream")
for _module in BUILT_IN_DETECTORS:
    importlib.import_module(_module)

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
AUTO_TYPE = "auto"
TILED_NAME = "tiled"


def supported_layouts() -> str:
    return ", ".join(plugin.layout for plugin in detector_plugins().values() if plugin.layout)


def resolve_model_path(path_or_name: str | os.PathLike[str], models_dir: Path) -> Path:
    candidate = Path(path_or_name)
    if candidate.suffix or candidate.is_file() or os.sep in str(path_or_name):
        return candidate
    return models_dir / f"{candidate}.onnx"


def describe_tensors(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {list(spec.shape)}" for spec in specs)


def detector_config_union() -> Any:
    """The typed union of every registered detector's settings (and "auto"), discriminated by ``type``."""
    models = [AutoConfig, *(plugin.config_model for plugin in detector_plugins().values())]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007 (built at run time)


def parse_detector_config(values: Mapping[str, Any]) -> DetectorConfig:
    """Validate detector settings (a mapping with ``type``); a bad key or value raises ValueError naming it."""
    kind = values.get("type")
    known = {AUTO_TYPE, *detector_plugins()}
    if kind not in known:
        raise ValueError(f"Unknown detector type {kind!r}; known: {sorted(known)}.")
    try:
        config: DetectorConfig = TypeAdapter(detector_config_union()).validate_python(dict(values))
    except ValidationError as error:
        unknown = sorted(str(e["loc"][-1]) for e in error.errors() if e["type"] == "extra_forbidden")
        if unknown:
            model = AutoConfig if kind == AUTO_TYPE else detector_plugins()[str(kind)].config_model
            options = sorted(set(model.model_fields) - {"type"})
            raise ValueError(f"Unknown detector option(s) {unknown}; known: {options}.") from None
        raise ValueError(f"Bad detector settings: {error.errors()[0]['msg']} ({'.'.join(map(str, error.errors()[0]['loc']))}).") from None
    return config


def build_detector(
    config: DetectorConfig,
    providers: Providers = None,
    *,
    intra_op_num_threads: int | None = None,
    models_dir: str | os.PathLike[str] | None = None,
) -> Detector:
    """The detector these settings describe; raises ModelLoadError (one sentence) for a missing or undecodable model."""
    directory = Path(models_dir) if models_dir else DEFAULT_MODELS_DIR
    runtime = DetectorRuntime(providers, intra_op_num_threads, directory,
                              load=partial(build_detector, providers=providers, intra_op_num_threads=intra_op_num_threads,
                                           models_dir=directory))
    if isinstance(config, AutoConfig):
        return _build_single_model(config, runtime, candidates=None)
    plugin = detector_plugins().get(config.type)
    if plugin is None:
        raise ValueError(f"Unknown detector type {config.type!r}; known: {sorted(detector_plugins())}.")
    if plugin.build is not None:
        return plugin.build(config, runtime)
    assert isinstance(config, OnnxModelConfig), f"{config.type} settings must name a model"
    return _build_single_model(config, runtime, candidates=[config.type])


def load_detector(
    path_or_name: str | os.PathLike[str],
    providers: Providers = None,
    *,
    intra_op_num_threads: int | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    input_size: int | None = None,
    num_classes: int | None = None,
    **opts: Any,
) -> Detector:
    """Open a detector by model name, .onnx path or "tiled"; raises ModelLoadError (one sentence) for a bad model.

    opts: the type's settings: score_threshold, iou_threshold, max_detections, labels; for "tiled"
    tile_grid, tile_overlap, nanodet_model, centernet_model, nanodet_score_threshold instead of labels.
    input_size: input side for YOLO exports with dynamic axes (default 640).
    num_classes: class count for NanoDet heads (default: len(labels), 80 for COCO).
    """
    if str(path_or_name) == TILED_NAME:
        values: dict[str, Any] = {"type": TILED_NAME, **opts}
    else:
        values = {"type": AUTO_TYPE, "model": str(path_or_name), **opts}
        values.update({k: v for k, v in (("input_size", input_size), ("num_classes", num_classes)) if v is not None})
    return build_detector(parse_detector_config(values), providers, intra_op_num_threads=intra_op_num_threads,
                          models_dir=models_dir)


def _build_single_model(config: OnnxModelConfig, runtime: DetectorRuntime, candidates: list[str] | None) -> Detector:
    path = resolve_model_path(config.model, runtime.models_dir)
    session = open_session(path, runtime.providers, runtime.intra_op_num_threads)
    inputs, outputs = input_specs(session), output_specs(session)
    plugins = detector_plugins()
    for name in candidates or [name for name, plugin in plugins.items() if plugin.match is not None]:
        plugin = plugins[name]
        assert plugin.match is not None and plugin.create is not None
        layout = plugin.match(inputs, outputs, config)
        if layout is not None:
            own = config if isinstance(config, plugin.config_model) else plugin.config_model(
                **{**config.model_dump(exclude_unset=True), "type": plugin.name})
            return plugin.create(session, path, layout, own)
    expected = plugins[candidates[0]].layout if candidates else supported_layouts()
    raise ModelLoadError(
        f"Model {path} has inputs [{describe_tensors(inputs)}] and outputs "
        f"[{describe_tensors(outputs)}], which match no supported layout: {expected}."
    )
