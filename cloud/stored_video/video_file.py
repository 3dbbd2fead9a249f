"""What a video file is, and whether Rekognition Video would take it (checked before anything is uploaded).

Rekognition Video's documented limits for stored video: H.264 in an MPEG-4, MOV or AVI file, at most 10 GB
and at most 6 hours. A file outside them is refused here with one sentence, so nothing is uploaded for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

MAX_BYTES = 10 * 1024**3
MAX_DURATION_S = 6 * 3600.0
ACCEPTED_CODECS = frozenset({"h264"})
# PyAV names the demuxer of .mp4/.mov "mov,mp4,m4a,3gp,3g2,mj2"; AVI is "avi".
ACCEPTED_CONTAINERS = ("mp4", "mov", "avi")


class VideoRejected(ValueError):
    """The file is not a video, or one Rekognition Video would refuse; the message is one sentence."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    size_bytes: int
    duration_s: float
    width: int
    height: int
    fps: float
    codec: str
    container: str
    declared_frames: int = 0
    """the frame count the container states (0 where it states none); the file may deliver another number"""

    @property
    def minutes(self) -> float:
        return self.duration_s / 60.0

    def count_note(self, delivered: int) -> str:
        """One sentence when the file delivered another number of frames than its container states, else empty."""
        if not self.declared_frames or delivered == self.declared_frames:
            return ""
        return (f"{self.path.name}: the container says {self.declared_frames} frames, the file delivers {delivered}; "
                f"the annotated copy has the {delivered} it delivers")


def probe_video(path: Path) -> VideoInfo:
    """Open the file and read its first video stream's description; raise VideoRejected with the reason."""
    if not path.is_file():
        raise VideoRejected(f"{path} does not exist or is not a file.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoRejected(f"{path.name} has no video stream.")
            stream = container.streams.video[0]
            duration_s = _duration_s(container, stream)
            return VideoInfo(
                path=path,
                size_bytes=path.stat().st_size,
                duration_s=duration_s,
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(stream.average_rate or stream.guessed_rate or 0.0),
                codec=stream.codec_context.name,
                container=container.format.name,
                declared_frames=int(stream.frames or 0),
            )
    except av.error.FFmpegError as error:
        raise VideoRejected(f"{path.name} is not a video FFmpeg can read ({error.strerror or error}).") from None


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def check_rekognition_limits(info: VideoInfo) -> None:
    """Raise VideoRejected when Rekognition Video would refuse the file."""
    if info.codec not in ACCEPTED_CODECS:
        raise VideoRejected(
            f"{info.path.name} is encoded with {info.codec}; Rekognition Video takes H.264 only "
            f"(re-encode: ffmpeg -i {info.path.name} -c:v libx264 -an out.mp4)."
        )
    if not any(name in info.container.split(",") for name in ACCEPTED_CONTAINERS):
        raise VideoRejected(
            f"{info.path.name} is a {info.container} file; Rekognition Video takes MP4, MOV or AVI."
        )
    if info.size_bytes > MAX_BYTES:
        raise VideoRejected(f"{info.path.name} is {info.size_bytes / 1e9:.1f} GB; Rekognition Video takes at most 10 GB.")
    if info.duration_s > MAX_DURATION_S:
        raise VideoRejected(
            f"{info.path.name} lasts {info.duration_s / 3600:.1f} h; Rekognition Video takes at most 6 hours."
        )
    if info.duration_s <= 0:
        raise VideoRejected(f"{info.path.name} has no duration: it holds no playable video.")
