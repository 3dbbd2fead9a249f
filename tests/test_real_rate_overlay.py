"""Boxes and pixels from the same frame at a real camera rate: real footage at 25 fps through capture (its file paced at
the camera's rate, default ring) and the compositor (default program delay), with a detector stand-in that marks each
frame's detections with the frame's own number.

Every picture of the program's recording is matched against the clip's frames by its pixels, and the frame its boxes
were drawn for is read back from the picture itself (the capture-time stamp): the two must be the same frame.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from devstack.servers import LocalRedis
from services.compositor.renderer import letterbox_rect, read_timecode
from shared.schemas import Detection, DetectionSet, FrameRef, SchemaError, decode
from shared.stream_bus import DETECTIONS_STREAM, StreamBus, frames_stream

CLIP = Path(__file__).parent / "data" / "video" / "road-25fps.mp4"  # real footage at 25 fps (credit in CREDITS.md beside it)
FPS = 25
PROGRAM = (640, 360)
RUN_S = 9.0
DISTINCT = 4.0  # mean grey difference (0-255) of a 80x60 thumbnail from its neighbours' for a frame to be told apart


def marked_box(seq: int) -> tuple[float, float, float, float]:
    """A box whose place says which frame it belongs to."""
    x = 10.0 + (seq % 40) * 6
    return (x, 150.0, x + 40.0, 230.0)


def stand_in_detector(bus: StreamBus, stop: threading.Event) -> None:
    """Publishes one detection set per captured frame, for exactly that frame, as edge_infer would."""
    last = {frames_stream("road"): "$"}
    while not stop.is_set():
        for entry in bus.follow(last, count=100, block_ms=100):
            last[entry.stream] = entry.entry_id
            try:
                ref = decode(entry.payload)
            except SchemaError:
                continue
            if isinstance(ref, FrameRef):
                bus.publish(DETECTIONS_STREAM, DetectionSet(
                    camera_id="road", seq=ref.seq, frame_id=ref.frame_id, capture_ts=ref.capture_ts, width=ref.width,
                    height=ref.height, model="stand-in", provider="test", latency_ms=1.0,
                    detections=[Detection(label="person", score=0.9, box=marked_box(ref.seq))]))


def clip_thumbnails() -> np.ndarray:
    capture = cv2.VideoCapture(str(CLIP))
    thumbs = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        thumbs.append(thumbnail(frame))
    capture.release()
    return np.stack(thumbs)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (80, 60), interpolation=cv2.INTER_AREA).astype(np.float32)
    return small[12:, :]  # below the capture-time stamp the program writes in its top-left corner


def program_pictures(folder: Path) -> list[np.ndarray]:
    pictures = []
    for segment in sorted(folder.glob("program-*.mp4")):
        capture = cv2.VideoCapture(str(segment))
        while True:
            ok, picture = capture.read()
            if not ok:
                break
            pictures.append(picture)
        capture.release()
    return pictures


@pytest.mark.slow
def test_program_boxes_and_pixels_come_from_the_same_frame_at_25_fps(redis_server: LocalRedis, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"site: road\ncameras:\n  - {{id: road, role: master, source: 'file://{CLIP}?loop=1', width: 320, height: 240, "
                    f"fps: {FPS}}}\n")
    out = tmp_path / "program"
    overlay_log = tmp_path / "overlay.jsonl"
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_LOG_LEVEL": "INFO",
           "HYBRIDCAM_COMPOSITOR_FPS": str(FPS), "HYBRIDCAM_COMPOSITOR_OUTPUTS": "mp4", "HYBRIDCAM_COMPOSITOR_OUTPUT_DIR": str(out),
           "HYBRIDCAM_COMPOSITOR_WIDTH": str(PROGRAM[0]), "HYBRIDCAM_COMPOSITOR_HEIGHT": str(PROGRAM[1]),
           "HYBRIDCAM_COMPOSITOR_CRF": "18", "HYBRIDCAM_COMPOSITOR_TIMECODE": "true", "HYBRIDCAM_COMPOSITOR_OVERLAY_LOG": str(overlay_log),
           "HYBRIDCAM_COMPOSITOR_OVERLAY_CLOCK": "false", "HYBRIDCAM_COMPOSITOR_OVERLAY_CAMERA_NAME": "false",
           "HYBRIDCAM_COMPOSITOR_VIRTUAL_CAMERA": "false"}
    for name in ("HYBRIDCAM_CAPTURE_RING_SLOTS", "HYBRIDCAM_CAPTURE_RING_S", "HYBRIDCAM_COMPOSITOR_PROGRAM_DELAY_S"):
        env.pop(name, None)  # the defaults are what is tested
    bus = StreamBus(redis_server.url)
    stop = threading.Event()
    detector = threading.Thread(target=stand_in_detector, args=(bus, stop), daemon=True)
    detector.start()
    compositor = subprocess.Popen([sys.executable, "-m", "hybridcam", "compositor", "--duration", str(RUN_S)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    capture = subprocess.Popen([sys.executable, "-m", "hybridcam", "capture", "--duration", str(RUN_S + 2)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        logs = {name: process.communicate(timeout=90)[0] for name, process in (("compositor", compositor), ("capture", capture))}
    finally:
        stop.set()
        detector.join(timeout=5)
        bus.close()
    assert compositor.returncode == 0 and capture.returncode == 0, f"{logs['compositor'][-2000:]}\n{logs['capture'][-2000:]}"
    assert "ring 27 frames (1.00 s" in logs["capture"], "the ring is sized from the camera's rate"

    entries = [json.loads(line) for line in overlay_log.read_text().splitlines()]
    by_capture_ts = {round(e["capture_ts"], 3): e for e in entries}
    own = [e for e in entries if not e["predicted"] and e["boxes"]]
    assert len(own) >= 0.8 * len(entries) > 0.8 * FPS * 4, f"the frame's own detections are drawn on most pictures ({len(own)}/{len(entries)})"
    for entry in own:
        assert entry["pixels_seq"] == entry["seq"], f"boxes of frame {entry['seq']} drawn over the pixels of frame {entry['pixels_seq']}"
        assert entry["boxes"] == [list(marked_box(entry["seq"]))], f"picture of frame {entry['seq']} drew another frame's boxes"

    # The pictures themselves: which clip frame their pixels are, against the frame their stamp (and boxes) belong to.
    # Only frames that differ clearly from their neighbours can tell (a still stretch of road looks the same frame to frame).
    thumbs = clip_thumbnails()
    count = len(thumbs)
    distinct = {i for i in range(count)
                if min(np.abs(thumbs[i] - thumbs[j % count]).mean() for j in (i - 2, i - 1, i + 1, i + 2)) > DISTINCT}
    x, y, w, h = letterbox_rect(320, 240, *PROGRAM)
    stamped = matched = 0
    mismatched: list[tuple[int, int]] = []
    for picture in program_pictures(out / "recordings"):
        entry = by_capture_ts.get(round(read_timecode(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)), 3))
        if entry is None:
            continue  # before the first frame arrived
        stamped += 1
        expected = entry["seq"] % count  # capture numbers the file's frames from 0 and loops it
        if expected not in distinct:
            continue
        shown = thumbnail(cv2.resize(picture[y:y + h, x:x + w], (320, 240), interpolation=cv2.INTER_AREA))
        window = [(expected + k) % count for k in range(-8, 9)]
        best = min(window, key=lambda i: float(np.abs(thumbs[i] - shown).mean()))
        if best == expected:
            matched += 1
        else:
            mismatched.append((entry["seq"], best))
    assert stamped >= 0.9 * len(entries), f"only {stamped} of {len(entries)} pictures carried a readable stamp"
    assert matched >= 20 and not mismatched, f"boxes' frame vs the clip frame the pixels are: {mismatched} ({matched} matched)"
