"""Settings of the compositor (HYBRIDCAM_COMPOSITOR_*), on top of the common ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.settings import CommonSettings

OutputName = Literal["mp4", "hls", "mjpeg", "rtmp"]


class CompositorSettings(CommonSettings):
    # -- program ------------------------------------------------------------------------
    compositor_fps: float = Field(30.0, gt=0.0, le=60.0, description="program frame rate (driven by wall time)")
    compositor_width: int = Field(1920, ge=160, le=3840, description="program width in pixels (even)")
    compositor_height: int = Field(1080, ge=90, le=2160, description="program height in pixels (even)")
    compositor_outputs: str = Field("mp4,hls", description="comma-separated: mp4, hls, mjpeg, rtmp")
    compositor_output_dir: Path = Field(Path("program"), description="folder for MP4 segments, HLS and the EDL")
    compositor_segment_s: float = Field(60.0, gt=0.0, description="length of one MP4 recording segment")
    compositor_hls_segment_s: float = Field(2.0, gt=0.0, description="target length of one HLS segment")
    compositor_hls_list_size: int = Field(10, ge=0, description="segments kept in the HLS playlist (0 = all)")
    compositor_mjpeg_port: int = Field(8090, ge=0, le=65535, description="port of the MJPEG preview (0 = any free port)")
    compositor_mjpeg_fps: float = Field(5.0, gt=0.0, le=30.0, description="frame rate of the MJPEG preview")
    compositor_rtmp_url: str = Field("", description="rtmp://host/app/key to push the program to")
    compositor_x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "ultrafast"
    compositor_crf: int = Field(26, ge=0, le=51, description="x264 constant rate factor (lower = better, bigger)")
    compositor_keyframe_s: float = Field(1.0, gt=0.0, description="seconds between key frames (segments cut on them)")
    # -- director -----------------------------------------------------------------------
    compositor_min_shot_s: float = Field(3.0, gt=0.0, description="no score-driven cut before a shot lasted this long")
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
    compositor_virtual_camera: bool = Field(False, description="smooth digital pan/zoom onto the people inside a shot")
    compositor_timecode: bool = Field(False, description="stamp the capture time as a binary code (latency bench)")
    compositor_face_labels: bool = Field(False, description="write the names of face watch-list hits on the program")
    compositor_face_label_hold_s: float = Field(4.0, gt=0.0, description="how long a watch-list hit's name stays on its camera")

    @field_validator("compositor_outputs")
    @classmethod
    def _known_outputs(cls, value: str) -> str:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - {"mp4", "hls", "mjpeg", "rtmp"})
        if unknown:
            raise ValueError(f"unknown output(s) {', '.join(unknown)}; choose from mp4, hls, mjpeg, rtmp")
        return ",".join(names)

    @model_validator(mode="after")
    def _consistent(self) -> CompositorSettings:
        if self.compositor_width % 2 or self.compositor_height % 2:
            raise ValueError("compositor_width and compositor_height must be even (H.264 4:2:0)")
        if "rtmp" in self.output_names and not self.compositor_rtmp_url.startswith(("rtmp://", "rtmps://")):
            raise ValueError("the rtmp output needs HYBRIDCAM_COMPOSITOR_RTMP_URL=rtmp://host/app/key")
        return self

    @property
    def output_names(self) -> list[str]:
        return [n for n in self.compositor_outputs.split(",") if n]

    @property
    def label_set(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.compositor_labels.split(",") if n.strip())
