"""HLS for browsers: MPEG-TS segments plus a playlist, written by FFmpeg's hls muxer."""

from __future__ import annotations

from pathlib import Path

from services.compositor.outputs.program_output import ContainerOutput


class HlsOutput(ContainerOutput):
    name = "hls"

    def __init__(self, folder: Path, segment_s: float, list_size: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        flags = "independent_segments+program_date_time" + ("+delete_segments" if list_size else "")
        options = {
            "hls_time": f"{segment_s:g}",
            "hls_list_size": str(list_size),
            "hls_flags": flags,
            "hls_segment_filename": str(folder / "program-%05d.ts"),
        }
        super().__init__(str(folder / "program.m3u8"), "hls", options)
