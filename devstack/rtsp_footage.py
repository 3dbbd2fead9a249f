"""Footage for the RTSP test cameras: a real clip re-encoded at a camera's size, rate and codec.

FFmpeg (Debian's, with libx264 and libx265) makes each variant once and keeps it in a cache
folder: no B-frames and a key frame every second, as IP cameras send, so a client that joins
starts within a second and every frame it decodes is the file's frame in order.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devstack.servers import LocalStackError

ENCODERS = {"h264": "libx264", "h265": "libx265"}


def footage_variant(source: Path, cache_dir: Path, width: int, height: int, fps: float, codec: str = "h264",
                    seconds: float | None = None) -> Path:
    """``source`` scaled to width x height, resampled to ``fps`` (frames dropped or repeated, as a camera
    set to that rate would show the scene), encoded with ``codec``; cached by these parameters."""
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {', '.join(ENCODERS)}, got {codec!r}")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise LocalStackError("ffmpeg is needed to prepare RTSP footage (Debian package ffmpeg)")
    length = f"-{seconds:g}s" if seconds else ""
    target = cache_dir / f"{source.stem}-{width}x{height}-{fps:g}fps{length}-{codec}.mp4"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    keyint = str(max(1, round(fps)))
    codec_args = ["-c:v", ENCODERS[codec], "-preset", "veryfast", "-crf", "26", "-g", keyint, "-bf", "0"]
    codec_args += ["-x265-params", f"keyint={keyint}:min-keyint={keyint}:bframes=0:log-level=error"] if codec == "h265" \
        else ["-keyint_min", keyint, "-sc_threshold", "0"]
    partial = target.with_suffix(".partial.mp4")
    command = [ffmpeg, "-v", "error", "-y", "-i", str(source), *(["-t", f"{seconds:g}"] if seconds else []), "-an",
               "-vf", f"fps={fps:g},scale={width}:{height}", *codec_args, "-pix_fmt", "yuv420p", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LocalStackError(f"ffmpeg could not encode {source.name}: {result.stderr.strip()[-300:]}")
    partial.rename(target)
    return target


# The footage the project carries for its RTSP cameras (tests/data/rtsp/README.md): a real 60 fps road clip
# and 3 s variants of it. Mount name -> (file, codec).
FOOTAGE_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "rtsp"
ROAD_60FPS = FOOTAGE_DIR / "road-60fps.mp4"  # 320x240, 60 fps, H.264, 8 s
ROAD_VARIANTS = {  # mount -> (width, height, fps, codec) of footage_variant(ROAD_60FPS, ..., seconds=3)
    "h264-25": (320, 240, 25, "h264"),
    "h264-30": (320, 240, 30, "h264"),
    "h265-30": (320, 240, 30, "h265"),
    "h265-60": (320, 240, 60, "h265"),
    "h264-30-big": (640, 480, 30, "h264"),
}


def road_cameras() -> dict[str, tuple[Path, str]]:
    """Every committed road camera: ``h264-60`` (the cut itself) and the variants above."""
    cameras = {"h264-60": (ROAD_60FPS, "h264")}
    for name, (width, height, fps, codec) in ROAD_VARIANTS.items():
        cameras[name] = (FOOTAGE_DIR / f"road-60fps-{width}x{height}-{fps}fps-3s-{codec}.mp4", codec)
    return cameras
