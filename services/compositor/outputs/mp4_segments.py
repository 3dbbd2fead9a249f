"""H.264 recording in MP4 segments (FFmpeg's segment muxer, cut on key frames), pruned by age and size."""

from __future__ import annotations

import time
from pathlib import Path

from services.compositor.encoder import EncodedPacket
from services.compositor.outputs.program_output import ContainerOutput
from services.compositor.outputs.recording_retention import RetentionPass, RetentionPolicy, prune_recordings

RETENTION_EVERY_S = 10.0


class Mp4Segments(ContainerOutput):
    name = "mp4"

    def __init__(self, folder: Path, segment_s: float, retention: RetentionPolicy | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.retention = retention or RetentionPolicy()
        self.last_retention: RetentionPass | None = None
        self._next_retention = 0.0
        options = {
            "segment_time": f"{segment_s:g}",
            "segment_format": "mp4",
            "reset_timestamps": "1",
            # fragmented MP4: a segment stays playable if the process is killed mid-way
            "segment_format_options": "movflags=+frag_keyframe+empty_moov+default_base_moof",
        }
        started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        super().__init__(str(folder / f"program-{started}-%05d.mp4"), "segment", options)

    def send_packet(self, packet: EncodedPacket) -> None:
        super().send_packet(packet)
        now = time.monotonic()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            self.apply_retention()

    def apply_retention(self) -> RetentionPass:
        self.last_retention = prune_recordings(self.folder, self.retention, time.time())
        self.counters["segments_pruned"] += self.last_retention.removed
        return self.last_retention

    def describe(self) -> str:
        policy = self.retention
        age = f"{policy.max_age_s / 3600:g} h" if policy.max_age_s else "any age"
        size = f"{policy.max_bytes / 1024**3:g} GB" if policy.max_bytes else "no size bound"
        return f"{super().describe()} (kept: {age}, {size})"

    def warning(self) -> str:
        return self.last_retention.warning if self.last_retention else ""
