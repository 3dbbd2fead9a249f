"""LiveNAS on a real clip: the patch sampler's choice, the online trainer's gain over bicubic, the processor."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.uplink import UplinkQuality, degrade, psnr, upscale_bicubic

jax = pytest.importorskip("jax")

CLIP = Path(__file__).parent / "data" / "video" / "one-by-one-cut.mp4"  # real footage, 768x432 at 10 fps
UPLINK = UplinkQuality(factor=2, jpeg_quality=30)


def clip_frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    frames = clip_frames()
    assert len(frames) >= 500, "the committed real clip is missing or short"
    return frames


def test_the_patch_sampler_picks_patches_that_lose_more_than_the_frame_on_a_real_frame(frames: list[np.ndarray]) -> None:
    from services.sampler.patch_sampler import PatchSampler

    frame = frames[300]  # a person in the room
    sampler = PatchSampler(UPLINK, patch_px=64, candidates=60, per_frame=6, patches_per_s=10.0)
    choice = sampler.choose(frame, ts=30.0)
    # Measured independently: the whole frame after the uplink, and each chosen patch's part of it.
    decoded, _ = degrade(frame, UPLINK)
    restored = upscale_bicubic(decoded, frame.shape[1], frame.shape[0])
    frame_mse = float(((frame.astype(np.float32) - restored.astype(np.float32)) ** 2).mean())
    assert len(choice.patches) == 6 and choice.informative >= 6
    for patch in choice.patches:
        region = (slice(patch.y, patch.y + 64), slice(patch.x, patch.x + 64))
        patch_mse = float(((frame[region].astype(np.float32) - restored[region].astype(np.float32)) ** 2).mean())
        assert patch_mse > 1.5 * frame_mse
        assert patch.distortion > 1.0  # against the sampler's own estimate of the frame's distortion
        assert choice.frame_distortion == pytest.approx(frame_mse, rel=0.35)
        assert patch.x % 32 == 0 and patch.y % 32 == 0  # aligned to the shrunk picture's JPEG blocks
        assert np.array_equal(patch.pixels, frame[region])
    assert [p.distortion for p in choice.patches] == sorted((p.distortion for p in choice.patches), reverse=True)
    # 6 patches at 10 a second: the next frame is due 0.6 s later
    assert not sampler.due(30.5) and sampler.due(30.6)


def test_an_untrained_network_is_exactly_bicubic(frames: list[np.ndarray]) -> None:
    from cloud.super_resolution.network import NetworkShape, initial_params
    from cloud.super_resolution.onnx_export import export_onnx
    from vision.super_resolution import SuperResolution

    processor = SuperResolution(export_onnx(initial_params(NetworkShape(factor=2)), NetworkShape(factor=2)))
    decoded, _ = degrade(frames[10], UPLINK)
    assert processor.factor == 2
    assert np.array_equal(processor.upscale(decoded), upscale_bicubic(decoded, decoded.shape[1] * 2, decoded.shape[0] * 2))


def test_the_online_trainer_beats_bicubic_on_held_back_frames_of_the_same_real_clip(frames: list[np.ndarray]) -> None:
    from cloud.super_resolution.trainer import OnlineTrainer
    from services.sampler.patch_sampler import PatchSampler
    from vision.super_resolution import SuperResolution

    training, held_back = frames[:300], frames[450::25]
    sampler = PatchSampler(UPLINK, patches_per_s=10.0)
    trainer = OnlineTrainer(seed=1)
    for index, frame in enumerate(training):  # the first 30 s, as the edge sends them
        ts = index / 10.0
        if sampler.due(ts):
            trainer.add([p.pixels for p in sampler.choose(frame, ts).patches], UPLINK)
    assert trainer.patches_seen >= 250
    gains = []
    for _ in range(5):  # five rounds of 100 steps, a new model after each
        trainer.train_round(100)
        processor = SuperResolution(trainer.export())
        gains.append(float(np.mean([psnr(f, processor.upscale(degrade(f, UPLINK)[0]))
                                    - psnr(f, upscale_bicubic(degrade(f, UPLINK)[0], f.shape[1], f.shape[0]))
                                    for f in held_back])))
    assert gains[-1] > 0.5, f"gain over bicubic per round: {gains}"
    assert gains[-1] > gains[0]


def test_with_an_uplink_budget_the_sampler_sends_within_10_percent_of_it_over_a_minute_of_a_real_clip(
        frames: list[np.ndarray]) -> None:
    from services.sampler.encoding import FrameEncoder
    from services.sampler.uplink_fit import UplinkFitter
    from shared.uplink import ByteBudget, kbit_per_s_to_bytes

    budget_kbps = 64.0
    fitter = UplinkFitter(ByteBudget(kbit_per_s_to_bytes(budget_kbps)), FrameEncoder(quality=85))
    offered = sent_bytes = sent = 0
    for index, frame in enumerate(frames[:600]):  # 60 s of capture time at 10 fps
        if index % 3:
            continue  # the policy chose every 3rd frame: more than 64 kbit/s carries at full quality
        offered += 1
        encoded = fitter.encode(frame, ts=index / 10.0)
        if encoded is not None:
            sent += 1
            sent_bytes += len(encoded.jpeg)
            assert encoded.width * encoded.shrink_factor in range(frame.shape[1] - 3, frame.shape[1] + 1)
    rate_kbps = sent_bytes * 8 / 1000 / 60.0
    assert abs(rate_kbps - budget_kbps) <= 0.1 * budget_kbps, f"{rate_kbps:.1f} kbit/s against a budget of {budget_kbps}"
    steps = {name: count for name, count in fitter.counters.items() if name.startswith("uplink_sent_")}
    assert sum(steps.values()) == sent and sent + fitter.counters["uplink_over_budget"] == offered  # every decision counted
    assert fitter.counters["uplink_bytes"] == sent_bytes and fitter.counters["uplink_bytes_saved"] > sent_bytes
    assert "uplink_sent_x1_q85" not in steps  # full quality would have cost more than the budget holds
