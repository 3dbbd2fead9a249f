"""Where frames come from: files, network/USB cameras through OpenCV, or the synthetic scene.

Every source has the same tiny interface (open, read into a buffer, close); the camera
worker handles pacing, reconnection and publishing, so a new kind of camera is one class.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from shared.errors import ConfigError
from shared.site_config import ResolvedCamera

# A corrupt stream makes FFmpeg log every broken macroblock (hundreds of lines a second); the camera
# worker reports what matters itself. OPENCV_FFMPEG_LOGLEVEL set by the user wins (8 = fatal only).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
if "OPENCV_LOG_LEVEL" not in os.environ:  # OpenCV's own warnings repeat what the worker logs once per outage
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class SceneRenderer(Protocol):
    """What a synthetic camera needs of the scene (services/capture/synthetic_scene.py, imported only when used)."""

    def render(self, camera_id: str, t: float, out: np.ndarray | None = None) -> np.ndarray: ...


class SourceError(Exception):
    """The source cannot deliver frames right now (closed, unreachable, end of file)."""


class FrameSource(Protocol):
    description: str
    paced_by_source: bool  # live cameras deliver at their own rate; files and synthetic need pacing

    def open(self) -> None: ...

    def read_into(self, out: np.ndarray, seq: int) -> None:
        """Write the next frame (BGR, out's shape) into ``out`` or raise SourceError."""

    def close(self) -> None: ...


def fit_into(frame: np.ndarray, out: np.ndarray) -> None:
    """Copy a decoded frame into the ring slot, resizing when the camera's size differs."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise SourceError(f"source delivered a frame of shape {frame.shape}, expected HxWx3")
    if frame.shape == out.shape:
        np.copyto(out, frame)
    else:
        cv2.resize(frame, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)


class OpenCVSource:
    """RTSP, HTTP(S), USB or a video file, decoded by OpenCV's FFmpeg backend."""

    def __init__(self, target: str | int, description: str, loop: bool = False, live: bool = True,
                 crop: tuple[float, float, float, float] | None = None, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0) -> None:
        self.target = target
        self.description = description
        self.loop = loop
        self.crop = crop  # normalised part of the picture this camera shows (a slave cut from a recording)
        self.paced_by_source = live
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        if isinstance(self.target, str) and "://" in self.target:
            # a network camera that accepts and then goes silent must not hang the thread for ever
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
            ])
        else:
            capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.description}")
        self.capture = capture

    def read_into(self, out: np.ndarray, seq: int) -> None:
        if self.capture is None:
            raise SourceError(f"{self.description} is not open")
        started = time.monotonic()
        ok, frame = self.capture.read()
        if self.paced_by_source and isinstance(self.target, str) and time.monotonic() - started >= self.read_timeout_s:
            # FFmpeg's read time-out fired: after it OpenCV drains the frames still inside the decoder, one per
            # time-out, so a silent camera would trickle old frames for several time-outs. Silent is lost.
            raise SourceError(f"{self.description} sent nothing for {self.read_timeout_s:g} s (read time-out)")
        if not ok and self.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if not ok or frame is None:
            raise SourceError(f"{self.description} delivered no frame")
        if self.crop is not None:
            h, w = frame.shape[:2]
            x0, y0, x1, y1 = self.crop
            frame = frame[int(y0 * h): max(int(y0 * h) + 2, int(y1 * h)), int(x0 * w): max(int(x0 * w) + 2, int(x1 * w))]
        fit_into(frame, out)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class SyntheticSource:
    """One virtual camera of the shared synthetic scene; frame ``seq`` shows scene time seq/fps."""

    paced_by_source = False

    def __init__(self, scene: SceneRenderer, camera_id: str, fps: float) -> None:
        self.scene = scene
        self.camera_id = camera_id
        self.fps = fps
        self.description = f"synthetic camera {camera_id}"

    def open(self) -> None:
        return None

    def read_into(self, out: np.ndarray, seq: int) -> None:
        self.scene.render(self.camera_id, seq / self.fps, out=out)

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class NetworkTimeouts:
    open_timeout_s: float = 10.0  # a camera that does not answer
    read_timeout_s: float = 5.0  # a camera whose connection stays open but sends nothing


def use_rtsp_transport(transport: str) -> None:
    """RTSP media over TCP (interleaved) or UDP for every camera of this process. FFmpeg tries UDP first
    by default; over TCP nothing is lost to a full socket buffer at 1080p60 and NAT does not matter.
    OPENCV_FFMPEG_CAPTURE_OPTIONS set by the user wins."""
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", f"rtsp_transport;{transport}")


def open_source(camera: ResolvedCamera, scene: SceneRenderer | None,
                network: NetworkTimeouts = NetworkTimeouts()) -> FrameSource:
    """Build the source a camera's URL names; an unusable URL is a ConfigError."""
    url = camera.source.strip()
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if url == "synthetic" or scheme == "synthetic":
        if scene is None:
            raise ConfigError(f"camera {camera.id}: synthetic source but no synthetic scene was built")
        return SyntheticSource(scene, camera.id, camera.fps)
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https"):
        return OpenCVSource(url, f"{scheme.upper()} camera {camera.id} ({parsed.hostname})",
                            open_timeout_s=network.open_timeout_s, read_timeout_s=network.read_timeout_s)
    if scheme == "usb":
        index = (parsed.netloc or parsed.path.strip("/")) or "0"
        if not index.isdigit():
            raise ConfigError(f"camera {camera.id}: usb source must be usb://<index>, got {url!r}")
        return OpenCVSource(int(index), f"USB camera {camera.id} (/dev/video{index})")
    if scheme in ("file", ""):
        path = Path(parsed.netloc + parsed.path if scheme == "file" and parsed.netloc not in ("", "localhost") else parsed.path)
        if not path.exists():
            raise ConfigError(f"camera {camera.id}: video file {path} does not exist")
        query = parse_qs(parsed.query)
        loop = query.get("loop", ["1"])[0] not in ("0", "false", "no")
        return OpenCVSource(str(path), f"file {path.name} for camera {camera.id}", loop=loop, live=False,
                            crop=_crop(camera.id, query.get("crop", [""])[0]))
    raise ConfigError(
        f"camera {camera.id}: unsupported source {url!r} (use synthetic, file://, rtsp://, http(s):// or usb://N)"
    )


def _crop(camera_id: str, text: str) -> tuple[float, float, float, float] | None:
    """``?crop=x0,y0,x1,y1`` (fractions of the picture): the camera shows only that part, scaled to its size."""
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"camera {camera_id}: crop must be four fractions x0,y0,x1,y1, got {text!r}") from None
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError(f"camera {camera_id}: crop {text!r} is not a rectangle inside 0..1")
    return x0, y0, x1, y1
