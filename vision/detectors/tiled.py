"""Cloud-tier detector: CenterNet on the full frame fused with NanoDet on overlapping tiles.

NanoDet alone stretches a whole frame to 416x416, so small people shrink to a few pixels; on tiles
it sees them at 2-3x the size. CenterNet on the full frame covers objects too big for one tile.
Tile detections that touch a tile edge inside the frame are cut-off objects and are dropped: the
neighbouring tile (overlap) or CenterNet sees them whole. Everything is merged with class-wise NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from vision.detectors.base import Detections, Detector, ModelLoadError, StageClock, StageTiming, validate_frame
from vision.detectors.nms import class_wise_nms
from vision.detectors.onnx_detector import OnnxDetector
from vision.detectors.plugin import AutoConfig, DetectorConfig, DetectorPlugin, DetectorRuntime, register_detector

# A box edge this close (in tile pixels) to an inner tile border counts as cut by the border.
EDGE_MARGIN_PX = 2.0


@dataclass(frozen=True)
class Tile:
    x0: int
    y0: int
    x1: int
    y1: int


def tile_starts(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    """(start, end) of `count` equal windows covering [0, length) that overlap by `overlap` of a window."""
    if count <= 1:
        return [(0, length)]
    window = int(np.ceil(length / (count - (count - 1) * overlap)))
    window = min(window, length)
    starts = np.linspace(0, length - window, count).round().astype(int)
    return [(int(start), int(start) + window) for start in starts]


def make_tiles(width: int, height: int, columns: int, rows: int, overlap: float) -> list[Tile]:
    return [
        Tile(x0, y0, x1, y1)
        for y0, y1 in tile_starts(height, rows, overlap)
        for x0, x1 in tile_starts(width, columns, overlap)
    ]


class TiledDetector(Detector):
    def __init__(
        self,
        full_frame: OnnxDetector,
        tile_detector: OnnxDetector,
        tile_grid: tuple[int, int] = (2, 2),
        tile_overlap: float = 0.25,
        iou_threshold: float = 0.5,
        max_detections: int = 200,
    ) -> None:
        columns, rows = tile_grid
        if columns < 1 or rows < 1 or not 0.0 <= tile_overlap < 1.0:
            raise ValueError(
                f"Tile grid must be at least 1x1 with overlap in [0, 1), got {tile_grid} and {tile_overlap}."
            )
        self.full_frame = full_frame
        self.tile_detector = tile_detector
        self.tile_grid = (columns, rows)
        self.tile_overlap = tile_overlap
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.name = f"{full_frame.name}+{tile_detector.name}-tiles{columns}x{rows}"
        self.input_size = full_frame.input_size
        self.providers = list(dict.fromkeys(full_frame.providers + tile_detector.providers))
        self.labels = full_frame.labels
        self._clock = StageClock()
        self._tiles: list[Tile] = []
        self._tiled_shape: tuple[int, int] = (0, 0)

    @property
    def last_timing(self) -> StageTiming:
        return self._clock.timing

    def tiles_for(self, width: int, height: int) -> list[Tile]:
        if (width, height) != self._tiled_shape:
            self._tiles = make_tiles(width, height, *self.tile_grid, self.tile_overlap)
            self._tiled_shape = (width, height)
        return self._tiles

    def detect(self, frame: np.ndarray) -> Detections:
        frame = validate_frame(frame)
        height, width = frame.shape[:2]
        totals = StageTiming()
        parts = [self._run(self.full_frame, frame, totals)]
        for tile in self.tiles_for(width, height):
            found = self._run(self.tile_detector, frame[tile.y0 : tile.y1, tile.x0 : tile.x1], totals)
            parts.append(self._whole_objects_in_tile(found, tile, width, height))
        self._clock.start()
        merged = class_wise_nms(Detections.concatenate(parts), self.iou_threshold, self.max_detections)
        totals.post_ms += self._clock.lap_ms()
        self._clock.timing = totals
        return merged

    @staticmethod
    def _run(detector: OnnxDetector, image: np.ndarray, totals: StageTiming) -> Detections:
        found = detector.detect(image)
        timing = detector.last_timing
        totals.pre_ms += timing.pre_ms
        totals.infer_ms += timing.infer_ms
        totals.post_ms += timing.post_ms
        return found

    @staticmethod
    def _whole_objects_in_tile(found: Detections, tile: Tile, width: int, height: int) -> Detections:
        """Shift tile boxes to frame pixels and drop those cut by a tile border inside the frame."""
        boxes = found.boxes + np.array([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
        cut = np.zeros(len(found), bool)
        if tile.x0 > 0:
            cut |= boxes[:, 0] <= tile.x0 + EDGE_MARGIN_PX
        if tile.y0 > 0:
            cut |= boxes[:, 1] <= tile.y0 + EDGE_MARGIN_PX
        if tile.x1 < width:
            cut |= boxes[:, 2] >= tile.x1 - EDGE_MARGIN_PX
        if tile.y1 < height:
            cut |= boxes[:, 3] >= tile.y1 - EDGE_MARGIN_PX
        kept = ~cut
        return Detections(boxes[kept], found.scores[kept], found.class_ids[kept])


class TiledConfig(DetectorConfig):
    """The cloud tier: CenterNet on the full frame (score_threshold) plus NanoDet on overlapping tiles."""

    type: Literal["tiled"] = "tiled"
    nanodet_model: str = "nanodet"
    centernet_model: str = "centernet"
    tile_grid: tuple[int, int] = (2, 2)
    tile_overlap: float = 0.25
    nanodet_score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0)
    max_detections: int = Field(200, ge=1)


def _build_tiled(config: TiledConfig, runtime: DetectorRuntime) -> TiledDetector:
    full_frame = runtime.load(AutoConfig(model=config.centernet_model, score_threshold=config.score_threshold,
                                         max_detections=config.max_detections))
    tiles = runtime.load(AutoConfig(model=config.nanodet_model, score_threshold=config.nanodet_score_threshold,
                                    max_detections=config.max_detections))
    if not isinstance(full_frame, OnnxDetector) or not isinstance(tiles, OnnxDetector):
        raise ModelLoadError("The tiled detector needs two single-model detectors, not another tiled one.")
    return TiledDetector(full_frame, tiles, config.tile_grid, config.tile_overlap, config.iou_threshold, config.max_detections)


register_detector(DetectorPlugin("tiled", TiledConfig, build=_build_tiled))
