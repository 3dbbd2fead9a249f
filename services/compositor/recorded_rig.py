"""Multi-camera rigs built from recorded video files, the way a real rig would see the scene.

A recorded file is the wide master (its full frame); each slave is a crop of that frame,
scaled up to the slave's size, and declares the crop as its ``covers`` region. The same
cameras can run live (capture reads ``file:...?crop=x0,y0,x1,y1``) or offline in
``hybridcam director-eval``, which reads the frames here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from shared.errors import ConfigError
from shared.site_config import Coverage, Region, ResolvedCamera

# A slave crop of a 16:9 master keeps 16:9 when its width and height fractions are equal.
DEFAULT_SLAVE_REGIONS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("left", (0.0, 0.1, 0.8, 0.9)),
    ("right", (0.2, 0.1, 1.0, 0.9)),
    ("centre", (0.2, 0.2, 0.8, 0.8)),
    ("top-left", (0.0, 0.0, 0.5, 0.5)),
    ("top-right", (0.5, 0.0, 1.0, 0.5)),
)


@dataclass(frozen=True)
class RecordedSource:
    """A file plus the part of its picture a camera sees (the whole frame for a master)."""

    path: Path
    crop: Region | None = None


def parse_file_source(url: str) -> RecordedSource:
    """``file:///abs.mp4``, ``file:rel.mp4`` or a bare path, with an optional ``?crop=x0,y0,x1,y1``."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("file", ""):
        raise ConfigError(f"{url!r} is not a recorded file (use file:///path.mp4 or a path)")
    path = Path((parsed.netloc + parsed.path) if parsed.scheme == "file" and parsed.netloc not in ("", "localhost") else parsed.path)
    crop_text = parse_qs(parsed.query).get("crop", [""])[0]
    crop = None
    if crop_text:
        try:
            x0, y0, x1, y1 = (float(v) for v in crop_text.split(","))
            crop = Region(x0=x0, y0=y0, x1=x1, y1=y1)
        except ValueError as error:
            raise ConfigError(f"{url!r}: crop must be four fractions x0,y0,x1,y1 with x1>x0, y1>y0 ({error})") from None
    return RecordedSource(path, crop)


def crop_pixels(frame: np.ndarray, crop: Region | None) -> np.ndarray:
    if crop is None:
        return frame
    h, w = frame.shape[:2]
    x0, x1 = int(round(crop.x0 * w)), max(int(round(crop.x0 * w)) + 2, int(round(crop.x1 * w)))
    y0, y1 = int(round(crop.y0 * h)), max(int(round(crop.y0 * h)) + 2, int(round(crop.y1 * h)))
    return frame[y0:y1, x0:x1]


def probe_clip(path: Path) -> tuple[int, int, float, int]:
    """width, height, fps, frame count of a video file (or a GIF)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigError(f"cannot open video file {path}")
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 10.0
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return width, height, fps, frames


def rig_cameras(clip: Path, slave_regions=DEFAULT_SLAVE_REGIONS, slave_count: int = 3, master_id: str = "wide") -> list[ResolvedCamera]:
    """The wide master (the clip's full frame) and ``slave_count`` scaled crops of it as slaves."""
    width, height, fps, _ = probe_clip(clip)
    cameras = [ResolvedCamera(id=master_id, name=master_id, source=f"file:{clip}", role="master", width=width, height=height,
                              fps=fps, cloud_sample_every=10, covers=None)]
    for slave_id, (x0, y0, x1, y1) in slave_regions[:slave_count]:
        region = Region(x0=x0, y0=y0, x1=x1, y1=y1)
        cameras.append(ResolvedCamera(
            id=slave_id, name=slave_id, source=f"file:{clip}?crop={x0},{y0},{x1},{y1}", role="slave", width=width, height=height,
            fps=fps, cloud_sample_every=10, covers=Coverage(master=master_id, region=region),
        ))
    return cameras


def rig_site_yaml(site: str, cameras: list[ResolvedCamera]) -> str:
    """The rig as a site file for the live services."""
    lines = [f"site: {site}", "cameras:"]
    for camera in cameras:
        entry = f"  - {{id: {camera.id}, role: {camera.role}, source: '{camera.source}', width: {camera.width}, height: {camera.height}, fps: {camera.fps:g}"
        if camera.covers is not None:
            r = camera.covers.region
            entry += f", covers: {{master: {camera.covers.master}, region: [{r.x0:g}, {r.y0:g}, {r.x1:g}, {r.y1:g}]}}"
        lines.append(entry + "}")
    return "\n".join(lines) + "\n"


def camera_frames(camera: ResolvedCamera, limit: int = 0) -> Iterator[np.ndarray]:
    """Every frame a camera of a recorded rig shows, at the camera's size (BGR)."""
    source = parse_file_source(camera.source)
    capture = cv2.VideoCapture(str(source.path))
    if not capture.isOpened():
        raise ConfigError(f"camera {camera.id}: cannot open {source.path}")
    out = np.empty((camera.height, camera.width, 3), np.uint8)
    count = 0
    try:
        while not limit or count < limit:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            view = crop_pixels(frame, source.crop)
            if view.shape[:2] == out.shape[:2]:
                out[:] = view
            else:
                cv2.resize(view, (camera.width, camera.height), dst=out, interpolation=cv2.INTER_LINEAR)
            count += 1
            yield out
    finally:
        capture.release()
