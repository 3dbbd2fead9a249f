"""Which frames the sampler sends (EveryNthFrame) and how it encodes them (FrameEncoder)."""

from __future__ import annotations

import cv2
import numpy as np

from services.sampler.encoding import FrameEncoder
from services.sampler.policy import EveryNthFrame
from shared.frame_ring import decode_jpeg
from shared.schemas import FrameRef
from shared.site_config import ResolvedCamera
from tests.fixtures.servers import TEST_DATA


def camera(every: int) -> ResolvedCamera:
    return ResolvedCamera(id="wide", name="wide", source="synthetic", role="master", width=640, height=480,
                          fps=10, cloud_sample_every=every, covers=None)


def ref(seq: int) -> FrameRef:
    return FrameRef(camera_id="wide", seq=seq, capture_ts=1767225600.0 + seq / 10, width=640, height=480)


def test_every_nth_frame_uses_the_cameras_interval() -> None:
    policy = EveryNthFrame()
    assert [s for s in range(100) if policy.should_send(camera(10), ref(s))] == list(range(0, 100, 10))


def test_every_nth_frame_can_override_the_interval() -> None:
    policy = EveryNthFrame(3)
    assert [s for s in range(10) if policy.should_send(camera(10), ref(s))] == [0, 3, 6, 9]


def test_a_large_frame_is_shrunk_to_the_longest_side() -> None:
    photo = cv2.imread(str(TEST_DATA / "person.jpg"))
    big = cv2.resize(photo, (2560, 1696))
    encoded = FrameEncoder(85, 1280, 5 * 1024 * 1024).encode(big)
    assert (encoded.width, encoded.height) == (1280, 848)
    assert decode_jpeg(encoded.jpeg).shape == (848, 1280, 3)


def test_a_jpeg_over_the_byte_limit_is_made_to_fit() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    encoded = FrameEncoder(95, 0, 200_000).encode(noise)
    assert len(encoded.jpeg) <= 200_000
    assert decode_jpeg(encoded.jpeg).shape == (encoded.height, encoded.width, 3)


def test_a_frame_within_limits_is_kept_at_full_size() -> None:
    photo = cv2.imread(str(TEST_DATA / "person.jpg"))
    encoded = FrameEncoder(85, 1920, 5 * 1024 * 1024).encode(photo)
    assert (encoded.width, encoded.height) == (photo.shape[1], photo.shape[0])
