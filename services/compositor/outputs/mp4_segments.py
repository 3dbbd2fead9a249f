"""H.264 recording in MP4 segments (FFmpeg's segment muxer, cut on key frames)."""

from __future__ import annotations

import time
from pathlib import Path

from services.compositor.outputs.program_output import ContainerOutput


class Mp4Segments(ContainerOutput):
    name = "mp4"

    def __init__(self, folder: Path, segment_s: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        options = {
            "segment_time": f"{segment_s:g}",
            "segment_format": "mp4",
            "reset_timestamps": "1",
            # fragmented MP4: a segment stays playable if the process is killed mid-way
            "segment_format_options": "movflags=+frag_keyframe+empty_moov+default_base_moof",
        }
        started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        super().__init__(str(folder / f"program-{started}-%05d.mp4"), "segment", options)
