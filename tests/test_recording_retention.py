"""Recordings are pruned by age and total size (never the segment being written); low disk is reported."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.compositor.outputs.recording_retention import RetentionPolicy, prune_recordings


def _segments(folder: Path, count: int, size: int, now: float, spacing_s: float = 60.0) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"program-20260101-000000-{i:05d}.mp4"
        path.write_bytes(b"\0" * size)
        mtime = now - (count - i) * spacing_s
        os.utime(path, (mtime, mtime))
        paths.append(path)
    return paths


def test_segments_older_than_the_age_bound_are_removed(tmp_path: Path) -> None:
    now = time.time()
    paths = _segments(tmp_path, 10, 100, now)  # ages 600, 540, ..., 60 s
    result = prune_recordings(tmp_path, RetentionPolicy(max_age_s=300), now)
    assert result.removed == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths[5:]]


def test_oldest_segments_go_until_the_rest_fit_the_size_bound(tmp_path: Path) -> None:
    now = time.time()
    paths = _segments(tmp_path, 10, 1000, now)
    result = prune_recordings(tmp_path, RetentionPolicy(max_bytes=3500), now)
    assert result.kept_bytes <= 3500 and result.kept == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths[7:]]


def test_the_segment_being_written_is_never_removed(tmp_path: Path) -> None:
    now = time.time()
    paths = _segments(tmp_path, 2, 10_000, now, spacing_s=10_000)
    prune_recordings(tmp_path, RetentionPolicy(max_age_s=1, max_bytes=1), now)
    assert [p.name for p in tmp_path.iterdir()] == [paths[-1].name]


def test_low_free_disk_is_a_warning(tmp_path: Path) -> None:
    result = prune_recordings(tmp_path, RetentionPolicy(min_free_bytes=2**62), time.time())
    assert result.warning.startswith("low disk")
    assert prune_recordings(tmp_path, RetentionPolicy(min_free_bytes=1), time.time()).warning == ""


def test_the_mp4_output_prunes_while_recording_and_health_warns(redis_server, tmp_path: Path) -> None:
    from services.compositor.outputs.mp4_segments import Mp4Segments
    from tests.test_health_progress import _program

    folder = tmp_path / "recordings"
    folder.mkdir()
    old = _segments(folder, 3, 100, time.time() - 10_000)
    output = Mp4Segments(folder, 1.0, RetentionPolicy(max_age_s=3600, min_free_bytes=2**62))
    program = _program(redis_server.url, tmp_path)
    program.outputs = [output]
    output.start(program.encoder.stream)
    start, pts = time.time(), -1
    from services.compositor.edit_decision_list import EditDecisionList

    program.edl = EditDecisionList(tmp_path / "edl.jsonl", start)
    for _ in range(15):
        pts = program._tick(time.time(), start, pts)
    program.follower.latest["wide"] = (None, time.time())  # type: ignore[assignment]
    assert not any(p.exists() for p in old)
    state, message = program.health_state()
    assert state == "degraded" and "low disk" in message
    output.close()
    program.encoder.close()
