"""The program's RTMP push shares the site's uplink: its one encode is capped at the part kept for it."""

from __future__ import annotations

import cv2
import pytest

from services.compositor.encoder import H264Encoder
from services.compositor.settings import CompositorSettings
from shared.errors import ConfigError
from shared.settings import load_settings
from tests.test_super_resolution import clip_frames


def encoded_kbps(max_kbps: float, frames: list, fps: float = 25.0) -> float:  # type: ignore[type-arg]
    encoder = H264Encoder(1280, 720, fps, "ultrafast", crf=18, keyframe_s=1.0, max_kbps=max_kbps)
    size = sum(len(p.data) for i, frame in enumerate(frames) for p in encoder.encode(frame, i)) + sum(len(p.data) for p in encoder.flush())
    encoder.close()
    return size * 8 / 1000 / (len(frames) / fps)


def test_with_rtmp_on_and_a_budget_the_program_encode_stays_within_its_part_of_the_uplink() -> None:
    frames = [cv2.resize(frame, (1280, 720)) for frame in clip_frames()[200:400]]  # 8 s of real footage played at 25 fps
    free = encoded_kbps(0.0, frames)
    capped = encoded_kbps(800.0, frames)
    assert free > 1500, f"the uncapped encode of this footage should need more than the cap ({free:.0f} kbit/s)"
    assert capped <= 800 * 1.15, f"{capped:.0f} kbit/s against a cap of 800"


def test_the_program_cap_applies_only_to_a_budgeted_rtmp_push(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDCAM_UPLINK_KBPS", "3000")
    monkeypatch.setenv("HYBRIDCAM_UPLINK_PROGRAM_KBPS", "2000")
    assert load_settings(CompositorSettings, compositor_outputs="mp4,hls").program_max_kbps == 0.0
    pushed = load_settings(CompositorSettings, compositor_outputs="mp4,rtmp", compositor_rtmp_url="rtmp://127.0.0.1/live/x")
    assert pushed.program_max_kbps == 2000.0 and pushed.sampler_uplink_kbps == 1000.0
    monkeypatch.setenv("HYBRIDCAM_UPLINK_PROGRAM_KBPS", "3000")
    with pytest.raises(ConfigError, match="HYBRIDCAM_UPLINK_PROGRAM_KBPS"):
        load_settings(CompositorSettings)


def test_the_dashboard_shows_what_crossed_the_uplink_against_its_budget() -> None:
    from services.dashboard.site_state import SiteState
    from shared.schemas import Health
    from tests.test_dashboard_parts import SITE

    state = SiteState(SITE.site, SITE.resolved())
    sampler = Health(service="sampler", instance="s1", state="ok", counters={
        "uptime_s": 60.0, "frames_sampled": 30.0, "records_sent": 30.0, "bytes_sent": 300_000.0,
        "patch_bytes": 180_000.0, "uplink_bytes_saved": 2_000_000.0, "uplink_budget_kbps": 64.0})
    uplink = next(e["data"] for e in state.apply(sampler) if e["type"] == "uplink")
    assert uplink["bytes_sent"] + uplink["patch_bytes"] == 480_000.0  # 64 kbit/s over the minute
    assert uplink["budget_kbps"] == 64.0 and uplink["bytes_saved"] == 2_000_000.0 and uplink["uptime_s"] == 60.0
