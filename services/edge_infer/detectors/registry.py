"""load_detector: open a model by path or short name and pick its decoder from its input/output shapes.

Short names: "nanodet" and "centernet" (the models shipped in models/), "tiled" (the cloud tier:
CenterNet on the full frame + NanoDet on tiles). Any other name is looked up as <models_dir>/<name>.onnx.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from services.edge_infer.detectors.base import Detector, ModelLoadError
from services.edge_infer.detectors.centernet import CenterNetDetector, match_centernet_layout
from services.edge_infer.detectors.coco_labels import COCO_LABELS
from services.edge_infer.detectors.nanodet import NanoDetDetector, match_nanodet_layout
from services.edge_infer.detectors.onnx_detector import OnnxDetector
from services.edge_infer.detectors.openvino_session import OpenVinoTarget
from services.edge_infer.detectors.onnx_session import (
    TensorSpec,
    input_specs,
    open_session,
    output_specs,
)
from services.edge_infer.detectors.tiled import TiledDetector
from services.edge_infer.detectors.yolo import YoloDetector, match_yolo_layout
from services.edge_infer.providers import ProviderChoice, ProviderSpec

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
TILED_NAME = "tiled"
DECODER_OPTIONS = {"score_threshold", "iou_threshold", "max_detections", "labels"}
TILED_OPTIONS = {
    "tile_grid", "tile_overlap", "nanodet_model", "centernet_model", "nanodet_score_threshold",
    "score_threshold", "iou_threshold", "max_detections",
}
SUPPORTED_LAYOUTS = (
    "NanoDet (NCHW input, [1,N,C] + [1,N,4*bins] per stride), "
    "YOLOv8-11 (NCHW input, one [1,4+C,N] or [1,N,4+C] output) or "
    "CenterNet (NHWC input, [1,K,6] detections)"
)

Providers = Sequence[ProviderSpec] | ProviderChoice | OpenVinoTarget | None


def resolve_model_path(path_or_name: str | os.PathLike[str], models_dir: Path) -> Path:
    candidate = Path(path_or_name)
    if candidate.suffix or candidate.is_file() or os.sep in str(path_or_name):
        return candidate
    return models_dir / f"{candidate}.onnx"


def describe_tensors(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {list(spec.shape)}" for spec in specs)


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
    """Open a detector; raises ModelLoadError (one sentence) for a missing, non-ONNX or undecodable model.

    opts: score_threshold, iou_threshold, max_detections, labels; for "tiled" also tile_grid,
    tile_overlap, nanodet_model, centernet_model, nanodet_score_threshold.
    input_size: input side for YOLO exports with dynamic axes (default 640).
    num_classes: class count for NanoDet heads (default: len(labels), 80 for COCO).
    """
    directory = Path(models_dir) if models_dir else DEFAULT_MODELS_DIR
    tiled = str(path_or_name) == TILED_NAME
    known = TILED_OPTIONS if tiled else DECODER_OPTIONS
    unknown = set(opts) - known
    if unknown:
        raise ValueError(f"Unknown detector option(s) {sorted(unknown)}; known: {sorted(known)}.")
    if tiled:
        return load_tiled_detector(providers, intra_op_num_threads, directory, **opts)
    path = resolve_model_path(path_or_name, directory)
    session = open_session(path, providers, intra_op_num_threads)
    inputs, outputs = input_specs(session), output_specs(session)
    classes = num_classes or len(opts.get("labels", COCO_LABELS))
    if layout := match_nanodet_layout(inputs, outputs, classes):
        return NanoDetDetector(session, path, layout, **opts)
    if layout := match_centernet_layout(inputs, outputs):
        return CenterNetDetector(session, path, layout, **opts)
    if layout := match_yolo_layout(inputs, outputs, input_size):
        return YoloDetector(session, path, layout, **opts)
    raise ModelLoadError(
        f"Model {path} has inputs [{describe_tensors(inputs)}] and outputs "
        f"[{describe_tensors(outputs)}], which match no supported layout: {SUPPORTED_LAYOUTS}."
    )


def load_tiled_detector(
    providers: Providers,
    intra_op_num_threads: int | None,
    models_dir: Path,
    *,
    nanodet_model: str | os.PathLike[str] = "nanodet",
    centernet_model: str | os.PathLike[str] = "centernet",
    tile_grid: tuple[int, int] = (2, 2),
    tile_overlap: float = 0.25,
    nanodet_score_threshold: float = 0.35,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
    max_detections: int = 200,
) -> TiledDetector:
    """The cloud tier: CenterNet (full frame, score_threshold) + NanoDet on tiles (nanodet_score_threshold)."""
    shared = {"intra_op_num_threads": intra_op_num_threads, "models_dir": models_dir}
    full_frame = load_detector(
        centernet_model, providers, score_threshold=score_threshold, max_detections=max_detections, **shared
    )
    tiles = load_detector(
        nanodet_model, providers, score_threshold=nanodet_score_threshold, max_detections=max_detections, **shared
    )
    if not isinstance(full_frame, OnnxDetector) or not isinstance(tiles, OnnxDetector):
        raise ModelLoadError("The tiled detector needs two single-model detectors, not another tiled one.")
    return TiledDetector(full_frame, tiles, tile_grid, tile_overlap, iou_threshold, max_detections)
