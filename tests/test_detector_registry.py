"""Detector registry: typed settings keyed by type, "auto" layout picking, and a plug-in registered from outside."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from tests.fixtures.detector_models import NANODET_PATH
from vision.detectors import (
    AutoConfig,
    Detections,
    DetectorConfig,
    DetectorPlugin,
    ModelLoadError,
    build_detector,
    load_detector,
    parse_detector_config,
)
from vision.detectors import plugin as plugin_module
from vision.detectors.base import Detector, StageTiming
from vision.detectors.centernet import CenterNetConfig
from vision.detectors.nanodet import NanoDetDetector
from vision.detectors.tiled import TiledConfig, TiledDetector


def test_settings_are_typed_by_type_with_each_detectors_defaults() -> None:
    centernet = parse_detector_config({"type": "centernet", "model": "centernet"})
    assert isinstance(centernet, CenterNetConfig) and centernet.score_threshold == 0.3
    tiled = parse_detector_config({"type": "tiled", "tile_grid": [3, 2]})
    assert isinstance(tiled, TiledConfig) and tiled.tile_grid == (3, 2) and tiled.max_detections == 200
    assert isinstance(parse_detector_config({"type": "auto", "model": "nanodet"}), AutoConfig)


@pytest.mark.parametrize(("values", "message"), [
    ({"type": "nanodet", "model": "nanodet", "tile_grid": [2, 2]}, r"Unknown detector option\(s\) \['tile_grid'\]"),
    ({"type": "ssd", "model": "x"}, "Unknown detector type 'ssd'"),
    ({"type": "yolo", "model": "x", "score_threshold": 3}, "score_threshold"),
])
def test_bad_settings_are_refused_with_the_key_named(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_detector_config(values)


def test_auto_picks_the_layout_and_an_explicit_type_checks_it() -> None:
    detector = build_detector(parse_detector_config({"type": "auto", "model": str(NANODET_PATH), "score_threshold": 0.5}))
    assert isinstance(detector, NanoDetDetector) and detector.score_threshold == 0.5
    with pytest.raises(ModelLoadError, match="CenterNet"):
        build_detector(parse_detector_config({"type": "centernet", "model": str(NANODET_PATH)}))


def test_tiled_builds_from_settings() -> None:
    detector = load_detector("tiled", tile_grid=(3, 1))
    assert isinstance(detector, TiledDetector) and detector.tile_grid == (3, 1)


class EveryFrameOneBox(Detector):
    def __init__(self, side: int) -> None:
        self.name, self.input_size, self.providers, self.labels = "fixed", (side, side), ["none"], ("thing",)
        self.side = side

    @property
    def last_timing(self) -> StageTiming:
        return StageTiming()

    def detect(self, frame: np.ndarray) -> Detections:
        return Detections(np.array([[0, 0, self.side, self.side]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int32))


class FixedConfig(DetectorConfig):
    type: Literal["fixed"] = "fixed"
    side: int = 8


def test_a_detector_registered_from_outside_is_configured_and_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_module, "_PLUGINS", dict(plugin_module._PLUGINS))
    plugin_module.register_detector(DetectorPlugin("fixed", FixedConfig, build=lambda config, runtime: EveryFrameOneBox(config.side)))
    detector = build_detector(parse_detector_config({"type": "fixed", "side": 5}))
    found = detector.detect(np.zeros((10, 10, 3), np.uint8))
    assert found.boxes.tolist() == [[0.0, 0.0, 5.0, 5.0]]


def test_the_edge_takes_typed_detector_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.edge_infer.main import build_detectors
    from services.edge_infer.settings import EdgeInferSettings
    from shared.errors import ConfigError
    from shared.settings import load_settings

    monkeypatch.setenv("HYBRIDCAM_EDGE_DETECTOR", '{"type": "nanodet", "model": "nanodet", "score_threshold": 0.6}')
    detector = build_detectors(load_settings(EdgeInferSettings)).first
    assert isinstance(detector, NanoDetDetector) and detector.score_threshold == 0.6
    monkeypatch.setenv("HYBRIDCAM_EDGE_DETECTOR", '{"type": "nanodet", "model": "nanodet", "tiles": 4}')
    with pytest.raises(ConfigError, match=r"cannot load model .*Unknown detector option\(s\) \['tiles'\]"):
        build_detectors(load_settings(EdgeInferSettings))
