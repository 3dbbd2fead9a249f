"""Settings of the compositor (HYBRIDCAM_COMPOSITOR_*), on top of the common ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.settings import CommonSettings

OutputName = Literal["mp4", "hls", "mjpeg", "rtmp", "h264"]


class CompositorSettings(CommonSettings):
    # -- program ------------------------------------------------------------------------
    compositor_fps: float = Field(30.0, gt=0.0, le=60.0, description="program frame rate (driven by wall time)")
    compositor_width: int = Field(1920, ge=160, le=3840, description="program width in pixels (even)")
    compositor_height: int = Field(1080, ge=90, le=2160, description="program height in pixels (even)")
    compositor_outputs: str = Field("mp4,hls", description="comma-separated: mp4, hls, mjpeg, rtmp, h264")
    compositor_output_dir: Path = Field(Path("program"), description="folder for MP4 segments, HLS and the EDL")
    compositor_segment_s: float = Field(60.0, gt=0.0, description="length of one MP4 recording segment")
    compositor_retention_hours: float = Field(72.0, ge=0.0, description="MP4 segments older than this are removed (0 = keep)")
    compositor_retention_gb: float = Field(20.0, ge=0.0, description="oldest MP4 segments go beyond this total size (0 = no bound)")
    compositor_min_free_gb: float = Field(2.0, ge=0.0, description="health warns when the recordings' disk has less free space")
    compositor_upload_recordings: bool = Field(
        False, description="when the program ends, upload its MP4 segments to UPLOAD_BUCKET under recordings/<site>/")
    compositor_upload_bucket: str = Field("", description="bucket for the recordings (the stack's FramesBucketName)")
    compositor_upload_region: str | None = Field(None, description="region of the bucket (default: the AWS SDK's)")
    compositor_hls_segment_s: float = Field(2.0, gt=0.0, description="target length of one HLS segment")
    compositor_hls_list_size: int = Field(10, ge=0, description="segments kept in the HLS playlist (0 = all)")
    compositor_output_host: str = Field(
        "127.0.0.1", description="address the MJPEG/HLS preview and H.264 servers bind; they have no authentication, "
                                 "so anything but loopback exposes the program (and its face labels) to that network")
    compositor_output_max_clients: int = Field(
        8, ge=1, le=256, description="clients at once on each preview/H.264 server (a thread each); more get 503")
    compositor_mjpeg_port: int = Field(8090, ge=0, le=65535, description="port of the MJPEG preview (0 = any free port)")
    compositor_mjpeg_fps: float = Field(5.0, gt=0.0, le=30.0, description="frame rate of the MJPEG preview")
    compositor_h264_port: int = Field(8091, ge=0, le=65535,
                                      description="port of the encoded program stream for the dashboard's WebRTC view (0 = any)")
    compositor_multiview_mjpeg_port: int = Field(8092, ge=0, le=65535,
                                                 description="port of the multiview's MJPEG preview with --layout both (0 = any free port)")
    compositor_rtmp_url: str = Field("", description="rtmp://host/app/key to push the program to")
    compositor_x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "ultrafast"
    compositor_crf: int = Field(26, ge=0, le=51, description="x264 constant rate factor (lower = better, bigger)")
    compositor_keyframe_s: float = Field(1.0, gt=0.0, description="seconds between key frames (segments cut on them)")
    # -- director -----------------------------------------------------------------------
    compositor_director: Literal["action", "everyone"] = Field(
        "action", description="action: follow the action with shot grammar; everyone: the old 'show everyone' rule")
    compositor_min_shot_s: float = Field(2.0, gt=0.0, description="no score-driven cut before a shot lasted this long")
    compositor_target_shot_s: float = Field(6.0, gt=0.0, description="from this shot length on, cut for variety (action director)")
    compositor_max_shot_s: float = Field(20.0, gt=0.0, description="from this shot length on, any other shot framing the action wins")
    compositor_jump_cut_iou: float = Field(0.7, gt=0.0, le=1.0, description="never cut between shots whose views overlap this much")
    compositor_variety_bonus: float = Field(0.1, ge=0.0, description="score bonus for a change of shot size")
    compositor_watch_labels: str = Field("", description="comma-separated labels that raise a region's interest (e.g. dog,knife)")
    compositor_confirm_s: float = Field(0.7, ge=0.0, description="a challenger must lead this long before the cut")
    compositor_cooldown_s: float = Field(8.0, ge=0.0, description="no cut back to the camera just left within this time")
    compositor_switch_margin: float = Field(0.1, ge=0.0, description="score lead a challenger needs over the current shot")
    compositor_idle_after_s: float = Field(3.0, ge=0.0, description="no people for this long: go to the wide shot")
    compositor_detection_timeout_s: float = Field(3.0, gt=0.0, description="no detections for this long: hold the wide shot")
    compositor_frame_timeout_s: float = Field(2.0, gt=0.0, description="no frames from a camera for this long: cut away")
    compositor_track_max_age_s: float = Field(1.5, gt=0.0, description="a person unseen this long leaves the track state")
    compositor_labels: str = Field("person", description="comma-separated labels the director counts")
    compositor_min_score: float = Field(0.3, ge=0.0, le=1.0, description="detections below this score are ignored")
    # -- picture ------------------------------------------------------------------------
    compositor_overlay_boxes: bool = Field(True, description="draw detection boxes and labels")
    compositor_overlay_camera_name: bool = Field(True, description="write the camera's name")
    compositor_overlay_clock: bool = Field(True, description="write the UTC time")
    compositor_pip: bool = Field(True, description="show the master camera as a picture-in-picture on slave shots")
    compositor_virtual_camera: bool = Field(True, description="offer a moving 16:9 crop of the master as a shot")
    compositor_virtual_max_upscale: float = Field(2.0, ge=1.0, le=8.0, description="the crop never enlarges a source pixel more than this")
    compositor_pan_max_speed: float = Field(0.25, gt=0.0, description="virtual camera speed limit, master widths per second")
    compositor_pan_max_accel: float = Field(0.5, gt=0.0, description="virtual camera acceleration limit, master widths per second^2")
    compositor_pan_dead_zone: float = Field(0.12, ge=0.0, lt=1.0, description="share of the crop the action may drift before it pans")
    compositor_program_delay_s: float = Field(
        0.4, ge=0.0, le=5.0,
        description="the program shows frames this far behind capture, so boxes land on their own frame (ring must hold delay x fps + 2 frames)")
    compositor_overlay_log: Path | None = Field(
        None, description="write the boxes drawn on every program picture as JSON lines here (benchmarks; off by default)")
    compositor_layout: Literal["program", "multiview", "both"] = Field(
        "program", description="program: the cut; multiview: every camera in one picture; both: two outputs from the same frames")
    compositor_timecode: bool = Field(False, description="stamp the capture time as a binary code (latency bench)")
    compositor_face_labels: bool = Field(False, description="write the names of face watch-list hits on the program")
    compositor_face_label_hold_s: float = Field(4.0, gt=0.0, description="how long a watch-list hit's name stays on its camera")

    @field_validator("compositor_outputs")
    @classmethod
    def _known_outputs(cls, value: str) -> str:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - {"mp4", "hls", "mjpeg", "rtmp", "h264"})
        if unknown:
            raise ValueError(f"unknown output(s) {', '.join(unknown)}; choose from mp4, hls, mjpeg, rtmp, h264")
        return ",".join(names)

    @property
    def program_max_kbps(self) -> float:
        """The encode's cap when the program is pushed over a budgeted uplink (HYBRIDCAM_UPLINK_PROGRAM_KBPS); 0 = none."""
        return self.uplink_program_kbps if self.uplink_kbps and "rtmp" in self.output_names else 0.0

    @model_validator(mode="after")
    def _consistent(self) -> CompositorSettings:
        if self.compositor_width % 2 or self.compositor_height % 2:
            raise ValueError("compositor_width and compositor_height must be even (H.264 4:2:0)")
        if "rtmp" in self.output_names and not self.compositor_rtmp_url.startswith(("rtmp://", "rtmps://")):
            raise ValueError("the rtmp output needs HYBRIDCAM_COMPOSITOR_RTMP_URL=rtmp://host/app/key")
        if self.compositor_upload_recordings and not self.compositor_upload_bucket:
            raise ValueError("uploading recordings needs HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET (the stack's FramesBucketName)")
        if self.compositor_upload_recordings and "mp4" not in self.output_names:
            raise ValueError("uploading recordings needs the mp4 output in HYBRIDCAM_COMPOSITOR_OUTPUTS")
        return self

    @property
    def output_names(self) -> list[str]:
        return [n for n in self.compositor_outputs.split(",") if n]

    @property
    def watch_label_set(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.compositor_watch_labels.split(",") if n.strip())

    @property
    def label_set(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.compositor_labels.split(",") if n.strip())
