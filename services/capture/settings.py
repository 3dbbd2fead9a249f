"""Capture settings (HYBRIDCAM_CAPTURE_*), on top of the common ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import CommonSettings


class CaptureSettings(CommonSettings):
    capture_cameras: str = Field("", description="comma-separated camera ids to run here; empty = every camera of the site")
    capture_ring_slots: int = Field(8, ge=2, le=64, description="frames kept per camera in shared memory")
    capture_inline_jpeg: bool = Field(False, description="also put a JPEG in each frame message, for consumers on other hosts")
    capture_jpeg_quality: int = Field(85, ge=10, le=100)
    capture_reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reconnection attempts")
    capture_open_timeout_s: float = Field(10.0, gt=0, le=120, description="longest wait for a network camera to answer when connecting")
    capture_read_timeout_s: float = Field(5.0, gt=0, le=120, description="a network camera silent this long with its connection open is reconnected")
    capture_rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP media over the RTSP connection (tcp: no losses, through NAT) or udp")
    capture_health_interval_s: float = Field(2.0, gt=0)
