"""The movinet-stream detector type: stream inference equals whole-clip inference, state kept per camera.

The model is the project's own tiny causal stream model (scripts/build_stream_model.py, random weights):
it has a MoViNet stream export's interface (one frame in, state tensors in and out) and a whole-clip
twin with the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from vision.detectors.base import ModelLoadError, StreamDetector
from vision.detectors.movinet_stream import MovinetStreamDetector
from vision.detectors.registry import build_detector, parse_detector_config

MODELS = Path(__file__).parent / "data" / "stream_model"
SIDE = 32


def clip_logits(frames: np.ndarray) -> np.ndarray:
    """Logits after each frame, from the whole clip at once: [T, C]."""
    session = ort.InferenceSession(str(MODELS / "movinet-clip-tiny.onnx"), providers=["CPUExecutionProvider"])
    rgb = frames[..., ::-1].astype(np.float32) / 255.0
    return session.run(None, {"image": rgb[None]})[0][0]


def stream_detector(**options: object) -> MovinetStreamDetector:
    config = parse_detector_config({"type": "movinet-stream", "model": str(MODELS / "movinet-stream-tiny.onnx"), **options})
    detector = build_detector(config, ["CPUExecutionProvider"])
    assert isinstance(detector, MovinetStreamDetector) and isinstance(detector, StreamDetector)
    return detector


def clip(seed: int, frames: int = 12) -> np.ndarray:
    """A clip of BGR frames at the model's side whose colours drift, so the logits change from frame to frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (SIDE, SIDE, 3))
    drift = rng.integers(-12, 13, (frames, 1, 1, 3)).cumsum(axis=0)
    return np.clip(base[None] + drift, 0, 255).astype(np.uint8)


def test_frame_by_frame_stream_equals_whole_clip() -> None:
    frames = clip(1)
    expected = clip_logits(frames)
    detector = stream_detector()
    streamed = np.stack([detector.logits_stream("cam-a", frame) for frame in frames])
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    assert np.abs(np.diff(expected, axis=0)).max() > 0.01  # the state matters: logits move as frames come


def test_state_is_kept_per_camera() -> None:
    """Two cameras' frames interleaved give each camera its own clip's logits, as if it ran alone."""
    frames_a, frames_b = clip(1), clip(2)
    expected_a, expected_b = clip_logits(frames_a), clip_logits(frames_b)
    detector = stream_detector()
    got_a, got_b = [], []
    for frame_a, frame_b in zip(frames_a, frames_b):
        got_a.append(detector.logits_stream("cam-a", frame_a))
        got_b.append(detector.logits_stream("cam-b", frame_b))
    np.testing.assert_allclose(np.stack(got_a), expected_a, atol=1e-5)
    np.testing.assert_allclose(np.stack(got_b), expected_b, atol=1e-5)
    detector.reset("cam-a")  # a reset stream starts again from zero state
    np.testing.assert_allclose(detector.logits_stream("cam-a", frames_a[0]), expected_a[0], atol=1e-5)


def test_detections_are_whole_frame_classes_above_the_threshold() -> None:
    detector = stream_detector(score_threshold=0.0, top_k=2)
    frames = clip(3)
    for frame in frames[:-1]:
        detector.detect_stream("cam", frame)
    found = detector.detect_stream("cam", frames[-1])
    logits = clip_logits(frames)[-1]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert list(found.class_ids) == list(np.argsort(-probabilities)[:2])
    np.testing.assert_allclose(found.scores, np.sort(probabilities)[::-1][:2], atol=1e-5)
    assert found.boxes.tolist() == [[0, 0, SIDE, SIDE]] * 2
    assert found.labels(detector.labels)[0].startswith("class")


def test_state_of_many_streams_is_bounded() -> None:
    detector = stream_detector(max_streams=3)
    frame = clip(4)[0]
    for camera in range(10):
        detector.logits_stream(f"cam-{camera}", frame)
    assert len(detector._states) == 3


def test_no_model_configured_says_what_to_supply() -> None:
    with pytest.raises(ModelLoadError, match=r"MoViNet stream model in ONNX.*\"model\".*A0, A1 or A2.*labels_file"):
        build_detector(parse_detector_config({"type": "movinet-stream"}))


def test_a_model_without_the_stream_interface_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no image input"):
        build_detector(parse_detector_config({"type": "movinet-stream", "model": "nanodet"}))
