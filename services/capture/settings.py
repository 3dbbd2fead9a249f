"""Capture settings (HYBRIDCAM_CAPTURE_*), on top of the common ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shared.frame_ring import ring_slots_for
from shared.settings import CommonSettings


class CaptureSettings(CommonSettings):
    capture_cameras: str = Field("", description="comma-separated camera ids to run here; empty = every camera of the site")
    capture_ring_s: float = Field(
        1.0, gt=0.0, le=10.0,
        description="seconds of frames each camera's ring keeps at the camera's rate: more than the longest any reader looks back "
                    "(the program delay, 0.4 s; the sampler's wait for edge results, 0.3 s) plus slack for a loaded machine")
    capture_ring_slots: int = Field(
        0, ge=0, le=1024, description="frames kept per camera in shared memory, whatever the rate; 0 = from HYBRIDCAM_CAPTURE_RING_S")
    capture_inline_jpeg: bool = Field(False, description="also put a JPEG in each frame message, for consumers on other hosts")
    capture_jpeg_quality: int = Field(85, ge=10, le=100)
    capture_reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reconnection attempts")
    capture_open_timeout_s: float = Field(10.0, gt=0, le=120, description="longest wait for a network camera to answer when connecting")
    capture_read_timeout_s: float = Field(5.0, gt=0, le=120, description="a network camera silent this long with its connection open is reconnected")
    capture_rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP media over the RTSP connection (tcp: no losses, through NAT) or udp")
    capture_health_interval_s: float = Field(2.0, gt=0)

    @field_validator("capture_ring_slots")
    @classmethod
    def _ring_holds_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("a frame ring needs at least 2 slots (0 = sized from HYBRIDCAM_CAPTURE_RING_S)")
        return value

    def ring_slots(self, fps: float) -> int:
        """Slots of the ring of a camera running at ``fps``."""
        return self.capture_ring_slots or ring_slots_for(fps, self.capture_ring_s)
