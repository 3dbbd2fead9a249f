"""End to end with real parts: redis-server, capture (synthetic walkthrough), edge-infer (NanoDet) and the compositor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.servers import LocalRedis
from services.compositor.edit_decision_list import read_edl, shots_of

SITE = """
site: compositor-e2e
defaults: {width: 640, height: 360, fps: 8}
synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}
cameras:
  - {id: wide, role: master, source: synthetic}
  - {id: north-west, source: synthetic, covers: {master: wide, region: [0.0, 0.0, 0.5, 0.5]}}
  - {id: south-west, source: synthetic, covers: {master: wide, region: [0.0, 0.5, 0.5, 1.0]}}
"""
PROGRAM_S = 13.0
FPS = 8


def hybridcam(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hybridcam", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def probe(path: Path) -> dict:
    reply = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height,r_frame_rate:format=duration",
         "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=30,
    )
    return json.loads(reply.stdout)


@pytest.mark.slow
def test_live_program_follows_people_and_survives_a_lost_camera(redis_server: LocalRedis, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    out = tmp_path / "program"
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_LOG_LEVEL": "INFO",
           "HYBRIDCAM_COMPOSITOR_FPS": str(FPS), "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4,hls", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(out),
           "HYBRIDCAM_COMPOSITOR_HLS_LIST_SIZE": "0", "HYBRIDCAM_COMPOSITOR_FRAME_TIMEOUT_S": "1.0",
           "HYBRIDCAM_EDGE_THREADS": "1", "HYBRIDCAM_COMPOSITOR_LAYOUT": "both"}
    compositor = hybridcam("compositor", "--duration", str(PROGRAM_S), env=env)
    # the group pauses in north-west's region for the first 6 s; north-west's camera is "removed" after 4.5 s,
    # while the wide camera still sees the group there
    captures = [
        hybridcam("capture", "--camera", "wide", "--camera", "south-west", "--duration", str(PROGRAM_S + 1), env=env),
        hybridcam("capture", "--camera", "north-west", "--duration", "4.5", env=env),
    ]
    edge = hybridcam("edge-infer", "--duration", str(PROGRAM_S + 1), env=env)
    logs = {}
    for name, process in (("compositor", compositor), ("edge", edge), ("capture", captures[0]), ("capture-nw", captures[1])):
        logs[name], _ = process.communicate(timeout=90)
        assert process.returncode == 0, f"{name} failed:\n{logs[name][-2000:]}"

    entries = read_edl(out / "edit-decision-list.jsonl")
    shots = shots_of(entries)
    assert entries[-1]["reason"] == "program ended" and entries[-1]["program_s"] == pytest.approx(PROGRAM_S, abs=0.5)
    assert any(shot.camera == "north-west" and not shot.forced for shot in shots), f"never closed in on the group: {entries}"
    lost = [e for e in entries if "north-west lost" in (e["reason"] or "")]
    assert lost and lost[0]["forced"] and lost[0]["camera"] == "wide", f"a lost camera must be cut away from, and said so: {entries}"
    assert not any(e["camera"] == "north-west" for e in entries if e["program_s"] > lost[0]["program_s"])
    assert all(s.duration_s >= 2.0 - 0.01 for s in shots[:-1] if not any(e.get("forced") and e["program_s"] == s.end_s for e in entries))

    segments = sorted((out / "recordings").glob("program-*.mp4"))
    assert segments
    durations = 0.0
    for segment in segments:
        info = probe(segment)
        stream = info["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"], stream["r_frame_rate"]) == ("h264", 1920, 1080, f"{FPS}/1")
        durations += float(info["format"]["duration"])
    assert durations == pytest.approx(PROGRAM_S, abs=1.0)
    for folder in (out, out / "multiview"):  # --layout both: program and multiview from the same frames, same clock
        hls = probe(folder / "hls" / "program.m3u8")
        assert (hls["streams"][0]["codec_name"], hls["streams"][0]["width"], hls["streams"][0]["r_frame_rate"]) == ("h264", 1920, f"{FPS}/1")
        assert float(hls["format"]["duration"]) == pytest.approx(PROGRAM_S, abs=1.0)
    multiview_segments = sorted((out / "multiview" / "recordings").glob("program-*.mp4"))
    assert multiview_segments and sum(float(probe(s)["format"]["duration"]) for s in multiview_segments) == pytest.approx(durations, abs=0.2)
