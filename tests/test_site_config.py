"""The site file: the defaults section merged into every camera, camera entries overriding it, clear errors."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import DEFAULT_SITE_FILE
from shared.site_config import CameraDefaults, load_site, parse_site


def site(defaults: dict, *cameras: dict) -> dict:
    return {"site": "t", "defaults": defaults, "cameras": list(cameras)}


def test_every_per_camera_setting_comes_from_defaults_unless_the_camera_sets_it() -> None:
    parsed = parse_site(site({"width": 640, "fps": 5, "cloud_sample_every": 3},
                             {"id": "a", "source": "synthetic", "role": "master"},
                             {"id": "b", "source": "synthetic", "fps": 25, "height": None}))
    a, b = parsed.resolved()
    assert (a.width, a.height, a.fps, a.cloud_sample_every) == (640, 1080, 5.0, 3)
    assert (b.width, b.height, b.fps, b.cloud_sample_every) == (640, 1080, 25.0, 3)  # null = take the default
    assert set(CameraDefaults.model_fields) <= set(type(a).model_fields)


def test_a_bad_default_is_reported_once_under_defaults() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_site(site({"fps": 0}, {"id": "a", "source": "synthetic"}, {"id": "b", "source": "synthetic"}))
    assert str(raised.value) == "site file: defaults.fps: Input should be greater than 0 (got 0)"


def test_unknown_keys_are_refused_for_defaults_and_cameras() -> None:
    with pytest.raises(ConfigError, match="defaults.zoom"):
        parse_site(site({"zoom": 2}, {"id": "a", "source": "synthetic"}))
    with pytest.raises(ConfigError, match="cameras.0.zoom"):
        parse_site(site({}, {"id": "a", "source": "synthetic", "zoom": 2}))


def test_the_demo_site_resolves() -> None:
    cameras = load_site(DEFAULT_SITE_FILE).resolved()
    assert [c.id for c in cameras][:2] == ["wide", "north-west"]
    assert {(c.width, c.height, c.fps) for c in cameras} == {(1280, 720, 10.0)}
    assert cameras[0].is_master and cameras[0].name == "Wide (master)" and cameras[0].cloud_sample_every == 30
