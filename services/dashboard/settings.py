"""Dashboard settings (HYBRIDCAM_DASHBOARD_*), on top of the common ones.

The page binds to 127.0.0.1 by default. Bound to any other address it refuses to start
without HYBRIDCAM_DASHBOARD_TOKEN, and then every route but /health asks for that token.
The cloud panels need the stack's outputs (FramesTableName, FramesBucketName); AWS
credentials, region and endpoint come from the AWS SDK's own variables.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from shared.settings import CommonSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardSettings(CommonSettings):
    dashboard_host: str = Field("127.0.0.1", description="address to bind; anything but loopback needs a token")
    dashboard_port: int = Field(8088, ge=1, le=65535, description="HTTP port of the page")
    dashboard_token: SecretStr | None = Field(None, description="access token (Bearer header, cookie or ?token=)")
    dashboard_allowed_hosts: str = Field(
        "", description="comma-separated host names the page may be reached under without a token, besides "
                        "localhost/127.0.0.1/::1 (a DNS-rebinding page's name is refused)")
    dashboard_max_event_streams: int = Field(64, ge=1, le=10_000, description="open /events streams at most (one per page)")
    dashboard_max_program_streams: int = Field(
        16, ge=1, le=1000, description="open /program.mjpg relays at most (each a stream from the compositor)")
    dashboard_login_failures: int = Field(
        10, ge=1, le=10_000, description="failed token checks per client address in a minute before it gets 429")
    dashboard_secure_cookie: bool | None = Field(
        None, description="mark the token cookie Secure: true, false, or empty = when the request came over HTTPS "
                          "(directly or per X-Forwarded-Proto from a TLS proxy)")
    dashboard_program_url: str = Field(
        "", description="the compositor's MJPEG stream (http://HOST:PORT/stream); empty = no program panel")
    dashboard_program_h264_url: str = Field(
        "", description="the compositor's encoded program (http://HOST:8091/stream, its h264 output); empty = MJPEG only")
    dashboard_webrtc_ice_servers: str = Field(
        "", description="comma-separated stun:/turn: URLs for viewers across NAT; empty = host candidates only (loopback, LAN)")
    dashboard_webrtc_turn_username: str = Field("", description="user name for the turn: servers")
    dashboard_webrtc_turn_credential: SecretStr | None = Field(None, description="credential for the turn: servers")
    dashboard_webrtc_max_viewers: int = Field(16, ge=1, le=256, description="open WebRTC viewers at most")
    dashboard_webrtc_max_viewers_per_client: int = Field(
        4, ge=1, le=256, description="open WebRTC viewers at most from one client address")
    dashboard_webrtc_connect_timeout_s: float = Field(
        15.0, gt=0.0, le=300.0, description="a WebRTC viewer not connected this long after its offer is released")
    dashboard_webrtc_camera_width: int = Field(960, ge=160, le=3840, description="width of a single-camera WebRTC view (encoded here)")
    dashboard_live_transports: str = Field(
        "websocket,webrtc,mjpeg", pattern=r"^\s*(websocket|webrtc|mjpeg)\s*(,\s*(websocket|webrtc|mjpeg)\s*)*$",
        description="live view transports the page tries, best first: websocket (the program's H.264 decoded with WebCodecs), "
                    "webrtc, mjpeg; the page says which one plays")
    dashboard_live_socket_max_viewers: int = Field(16, ge=1, le=256, description="open WebSocket live viewers at most")
    dashboard_frames_table: str = Field("", description="DynamoDB table of analysed frames (stack output FramesTableName)")
    dashboard_frames_bucket: str = Field("", description="S3 bucket of analysed frames (stack output FramesBucketName)")
    dashboard_region: str | None = Field(None, description="AWS region; empty = the AWS SDK's default")
    dashboard_cloud_frames: int = Field(12, ge=1, le=100, description="how many cloud-analysed frames the page lists")
    dashboard_cloud_window_h: float = Field(24.0, gt=0, description="how far back the page looks for cloud frames")
    dashboard_camera_silent_s: float = Field(
        6.0, gt=0.0, le=3600.0, description="a camera whose capture has not reported this long is shown down "
                                            "(capture reports every 2 s; its server is gone or cut off)")
    dashboard_alerts_kept: int = Field(50, ge=1, le=1000, description="alerts the feed shows")
    dashboard_snapshot_width: int = Field(640, ge=64, le=3840, description="width of the camera tile pictures")
    dashboard_tile_fps: float = Field(
        4.0, gt=0.0, le=60.0, description="most pictures per second a page loads per camera tile (each is a JPEG encode here)")
    dashboard_events_dir: Path = Field(Path("runs/events"), description="the events service's folder (HYBRIDCAM_EVENTS_DIR), "
                                       "read-only, for the review page")
    dashboard_price_set: str = Field("us-east-1-2026", description="price set of the running cost estimate")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> DashboardSettings:
        if not is_loopback(self.dashboard_host) and not self.token:
            raise ValueError(
                f"HYBRIDCAM_DASHBOARD_TOKEN is required when the dashboard binds to {self.dashboard_host} "
                "(only 127.0.0.1/localhost may go without one)")
        return self

    @property
    def token(self) -> str:
        return self.dashboard_token.get_secret_value() if self.dashboard_token else ""

    @property
    def cloud_configured(self) -> bool:
        return bool(self.dashboard_frames_table and self.dashboard_frames_bucket)
