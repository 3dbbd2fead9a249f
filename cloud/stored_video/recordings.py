"""Program recordings made by the compositor (MP4 segments `program-<start>-<n>.mp4`) as one file to analyse."""

from __future__ import annotations

import re
from pathlib import Path

import av

SEGMENT_NAME = re.compile(r"^(?P<recording>program-\d{8}-\d{6})-(?P<index>\d+)\.mp4$")


def recordings(folder: Path) -> dict[str, list[Path]]:
    """Recording name -> its segments in order."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("program-*.mp4")):
        if match := SEGMENT_NAME.match(path.name):
            found.setdefault(match.group("recording"), []).append(path)
    return found


def resolve_recording(folder: Path, name: str) -> list[Path]:
    """The segments of recording `name` (`last` for the newest)."""
    found = recordings(folder)
    if not found:
        raise FileNotFoundError(f"no program recordings in {folder} (run the compositor or `hybridcam demo` first).")
    if name == "last":
        return found[max(found)]
    if name in found:
        return found[name]
    raise FileNotFoundError(f"no recording {name!r} in {folder}; there are: {', '.join(sorted(found))}.")


def join_segments(segments: list[Path], output: Path) -> Path:
    """Remux the segments (no re-encode) into one MP4, shifting each segment's timestamps after the last."""
    with av.open(str(output), "w") as joined:
        out_stream = None
        offset = 0
        for segment in segments:
            with av.open(str(segment)) as source:
                if not source.streams.video:
                    continue
                stream = source.streams.video[0]
                if out_stream is None:
                    out_stream = joined.add_stream_from_template(stream)
                last = offset
                for packet in source.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts = (packet.pts or 0) + offset
                    packet.dts += offset
                    last = max(last, packet.pts + (packet.duration or 0))
                    packet.stream = out_stream
                    joined.mux(packet)
                offset = last
    return output
