"""Scene-change features: what counts as a change, what does not, and the reference handling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.scene_change import ChangeFeatures, SceneChangeDetector, SceneChangeSettings


def street(height: int = 1080, width: int = 1920) -> np.ndarray:
    """A textured still scene: gradient, a few shapes and some fine texture."""
    rng = np.random.default_rng(7)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    for _ in range(12):
        x, y = int(rng.integers(0, width - 200)), int(rng.integers(0, height - 200))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(frame, (x, y), (x + int(rng.integers(40, 200)), y + int(rng.integers(40, 200))), colour, -1)
    return frame


def with_noise(frame: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, frame.shape)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def with_person(frame: np.ndarray, x: int = 900, y: int = 500, w: int = 70, h: int = 180) -> np.ndarray:
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), (20, 30, 160), -1)
    cv2.circle(out, (x + w // 2, y - 20), 22, (150, 170, 210), -1)
    return out


def test_a_frame_without_a_reference_counts_as_changed() -> None:
    detector = SceneChangeDetector()
    features = detector.features(street())
    assert features == ChangeFeatures.everything()
    assert detector.settings.changed(features)
    assert not detector.has_reference


def test_the_same_scene_with_sensor_noise_is_unchanged() -> None:
    scene = street()
    detector = SceneChangeDetector()
    detector.set_reference(scene)
    assert detector.features(scene) == ChangeFeatures(0.0, 0.0, 0.0)
    noisy = detector.features(with_noise(scene, 4.0))
    assert not detector.settings.changed(noisy), noisy
    jpeg = cv2.imdecode(cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
    assert not detector.settings.changed(detector.features(jpeg))


def test_a_small_person_entering_is_a_change_with_its_area_measured() -> None:
    scene = street()
    detector = SceneChangeDetector()
    detector.set_reference(scene)
    features = detector.features(with_noise(with_person(scene), 3.0))
    assert detector.settings.changed(features)
    person_share = (70 * 180 + np.pi * 22 ** 2) / (1920 * 1080)
    assert person_share * 0.5 < features.largest_area < person_share * 2.5
    assert features.largest_area <= features.changed_fraction
    assert features.edge_difference > 0
    assert detector.settings.strength(features) > 1.0


def test_largest_area_tells_one_object_from_scattered_changes() -> None:
    scene = street()
    detector = SceneChangeDetector()
    detector.set_reference(scene)
    one_block = scene.copy()
    one_block[100:400, 100:700] = 255 - one_block[100:400, 100:700]
    scattered = scene.copy()
    for i in range(16):
        x, y = 60 + i * 110, 60 + (i % 4) * 240
        scattered[y:y + 106, x:x + 106] = 255 - scattered[y:y + 106, x:x + 106]
    block_features = detector.features(one_block)
    scattered_features = detector.features(scattered)
    assert block_features.changed_fraction == pytest.approx(scattered_features.changed_fraction, rel=0.5)
    assert block_features.largest_area > 5 * scattered_features.largest_area


def test_set_reference_without_a_frame_takes_the_frame_just_measured() -> None:
    scene, moved = street(), with_person(street())
    detector = SceneChangeDetector()
    with pytest.raises(ValueError, match="no frame measured"):
        detector.set_reference()
    detector.features(scene)
    detector.set_reference()
    assert detector.settings.changed(detector.features(moved))
    detector.set_reference()  # the frame with the person is now the reference
    assert detector.features(moved) == ChangeFeatures(0.0, 0.0, 0.0)
    assert detector.settings.changed(detector.features(scene))
    detector.clear_reference()
    assert detector.features(scene) == ChangeFeatures.everything()


def test_grey_and_small_frames_work_and_a_new_size_starts_over() -> None:
    detector = SceneChangeDetector()
    grey = cv2.cvtColor(street(480, 640), cv2.COLOR_BGR2GRAY)
    detector.set_reference(grey)
    assert detector.features(grey) == ChangeFeatures(0.0, 0.0, 0.0)
    detector.features(street(720, 1280))
    assert not detector.has_reference


def test_thresholds_are_configurable() -> None:
    scene = street()
    strict = SceneChangeDetector(SceneChangeSettings(changed_fraction=0.5, largest_area=0.5, edge_difference=0.5))
    strict.set_reference(scene)
    assert not strict.settings.changed(strict.features(with_person(scene)))


@pytest.mark.parametrize("frame", [np.zeros((100, 100, 4), np.uint8), np.zeros((100, 100, 3), np.float32),
                                   np.zeros((100,), np.uint8)])
def test_frames_of_the_wrong_kind_are_refused(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected a BGR or grey uint8 frame"):
        SceneChangeDetector().features(frame)


@pytest.mark.parametrize("kwargs", [{"width": 8}, {"blur": 2}, {"pixel_delta": 0}, {"changed_fraction": 0.0},
                                    {"largest_area": 1.5}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SceneChangeSettings(**kwargs)  # type: ignore[arg-type]


def test_a_kept_frame_becomes_the_reference_later() -> None:
    scene, moved = street(), with_person(street())
    detector = SceneChangeDetector()
    detector.set_reference(scene)
    detector.features(moved)
    kept = detector.keep()
    detector.features(scene)  # another frame measured meanwhile
    detector.set_reference(kept)
    assert detector.features(moved) == ChangeFeatures(0.0, 0.0, 0.0)
    detector.features(street(720, 1280))  # the camera changed size: an old kept frame no longer applies
    detector.set_reference(kept)
    assert not detector.has_reference
