"""Retention of the MP4 recordings: by age and by total size, with a warning when the disk runs low.

Segments are removed oldest first; the newest one (being written) is never touched. A full disk
would break far more than the recordings (Redis's append-only file, the sampler's spool), so the
free space of the recordings' file system is reported with every pass.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GB = 1024**3


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float = 0.0  # 0 = keep whatever its age
    max_bytes: int = 0  # 0 = no size bound
    min_free_bytes: int = 0  # warn below this much free disk


@dataclass(frozen=True)
class RetentionPass:
    removed: int
    removed_bytes: int
    kept: int
    kept_bytes: int
    free_bytes: int
    warning: str


def prune_recordings(folder: Path, policy: RetentionPolicy, now: float, pattern: str = "program-*.mp4") -> RetentionPass:
    """Remove segments older than ``max_age_s``, then the oldest until the rest fit ``max_bytes``."""
    segments = []
    for path in folder.glob(pattern):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        segments.append((stat.st_mtime, path.name, path, stat.st_size))
    segments.sort()
    newest = segments.pop() if segments else None  # the segment being written
    total = sum(size for *_, size in segments) + (newest[3] if newest else 0)
    removed = removed_bytes = 0
    for mtime, _, path, size in segments:
        too_old = policy.max_age_s > 0 and now - mtime > policy.max_age_s
        too_big = policy.max_bytes > 0 and total > policy.max_bytes
        if not (too_old or too_big):
            continue
        path.unlink(missing_ok=True)
        removed, removed_bytes, total = removed + 1, removed_bytes + size, total - size
    if removed:
        log.info("recordings: removed %d old segment(s), %.1f MB; %.1f MB kept", removed, removed_bytes / 1e6, total / 1e6)
    free = shutil.disk_usage(folder).free
    warning = ""
    if policy.min_free_bytes and free < policy.min_free_bytes:
        warning = f"low disk: {free / GB:.1f} GB free where recordings go (warning below {policy.min_free_bytes / GB:.1f} GB)"
    kept = len(segments) - removed + (1 if newest else 0)
    return RetentionPass(removed, removed_bytes, kept, total, free, warning)
