"""Capture from real RTSP cameras: a real clip served by GStreamer's RTSP server, H.264 and H.265 at 25-60 fps.

Every frame capture puts in the ring is checked against the file's own frame (a client of the test server
receives the mount's frames in order from its first), so a lost, repeated or corrupt frame fails the test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from devstack.rtsp_server import LocalRtspServer
from services.capture.camera_worker import CameraWorker
from services.capture.sources import NetworkTimeouts, open_source, use_rtsp_transport
from shared.frame_ring import FrameGone, FrameRingReader
from shared.schemas import FrameRef, Health, decode
from shared.site_config import ResolvedCamera
from shared.stream_bus import HEALTH_STREAM, StreamBus, frames_stream
from tests.fixtures.pipeline import ServiceRunner, wait_until

WIDTH, HEIGHT = 320, 240


def decoded_frames(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame if frame.shape[1::-1] == size else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    capture.release()
    return frames


def rtsp_camera(camera_id: str, url: str, fps: float) -> ResolvedCamera:
    return ResolvedCamera(id=camera_id, name=camera_id, source=url, role="master", covers=None,
                          width=WIDTH, height=HEIGHT, fps=fps)


@contextmanager
def capturing(camera: ResolvedCamera, redis_url: str, read_timeout_s: float = 5.0,
              reconnect_max_s: float = 2.0) -> Iterator[CameraWorker]:
    """The capture service's camera thread on a real RTSP camera, publishing into real Redis."""
    use_rtsp_transport("tcp")
    stop = threading.Event()
    source = open_source(camera, None, NetworkTimeouts(open_timeout_s=5.0, read_timeout_s=read_timeout_s))
    worker = CameraWorker(camera, source, StreamBus(redis_url), stop, ring_slots=8, reconnect_max_s=reconnect_max_s,
                          ring_namespace=f"rtsptest{os.getpid()}")
    worker.start()
    try:
        yield worker
    finally:
        stop.set()
        worker.join(timeout=15)


class RingWatcher(threading.Thread):
    """Follows frames:<camera> and copies each referenced frame out of the ring at once, as a consumer does."""

    def __init__(self, bus: StreamBus, camera_id: str) -> None:
        super().__init__(daemon=True)
        self.bus, self.stream = bus, frames_stream(camera_id)
        self.frames: dict[int, np.ndarray] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        last, reader = "0", None
        while not self.halt.is_set():
            for entry in self.bus.follow({self.stream: last}, count=50, block_ms=200):
                last = entry.entry_id
                ref = decode(entry.payload)
                assert isinstance(ref, FrameRef)
                reader = reader or FrameRingReader(ref.shm_name)
                try:
                    self.frames[ref.seq] = reader.read(ref.slot, ref.seq)
                except FrameGone:  # lapped before this thread got to it: nothing to check
                    continue
        if reader is not None:
            reader.close()


@pytest.mark.parametrize("mount, fps", [("h264-25", 25), ("h265-30", 30), ("h264-60", 60), ("h265-60", 60)])
def test_rtsp_camera_delivers_every_frame_at_its_rate(rtsp_server: LocalRtspServer, rtsp_footage: dict[str, Path],
                                                      redis_server, mount: str, fps: int, caplog) -> None:
    expected = decoded_frames(rtsp_footage[mount])
    watcher = RingWatcher(StreamBus(redis_server.url), mount)
    watcher.start()
    with capturing(rtsp_camera(mount, rtsp_server.url(mount), fps), redis_server.url) as worker:
        assert wait_until(lambda: worker.stats.frames >= fps, 20, 0.05), worker.health()
        frames, since = worker.stats.frames, time.monotonic()  # after the burst a client gets when it joins
        time.sleep(2.0)
        rate = (worker.stats.frames - frames) / (time.monotonic() - since)
        health = worker.health()
    watcher.halt.set()
    watcher.join(timeout=5)
    assert health.state == "ok" and worker.stats.reconnects == 0 and worker.stats.read_errors == 0, caplog.text
    assert 0.85 * fps <= rate <= 1.25 * fps, f"capture at {rate:.1f} fps from a {fps} fps camera"
    # the frames in the ring are the file's frames, in order, none lost or repeated
    assert len(watcher.frames) >= 1.5 * fps  # (a few may be lapped before this busy test thread copies them)
    mismatched = [seq for seq, frame in watcher.frames.items()
                  if cv2.PSNR(frame, expected[seq % len(expected)]) < 40]
    assert not mismatched, f"frames {mismatched[:10]} differ from the file's frames at those positions"


def test_camera_restarted_reconnects_with_backoff(rtsp_server: LocalRtspServer, redis_server) -> None:
    camera = rtsp_camera("restart", rtsp_server.url("h264-25"), 25)
    with capturing(camera, redis_server.url, reconnect_max_s=2.0) as worker:
        assert wait_until(lambda: worker.stats.frames >= 25, 20, 0.05)
        rtsp_server.stop()
        assert wait_until(lambda: worker.health().state == "reconnecting", 5, 0.05), worker.health()
        lost: Health = worker.health()
        time.sleep(4.0)  # refused meanwhile: retries after 0.5, 1, 2, 2 s, not in a tight loop
        attempts_while_down = worker.stats.reconnects
        rtsp_server.start()
        frames_before = worker.stats.frames
        assert wait_until(lambda: worker.stats.frames > frames_before + 25, 20, 0.05), worker.health()
        back = worker.health()
    assert "RTSP camera restart" in lost.message
    assert 2 <= attempts_while_down <= 5, f"{attempts_while_down} connection attempts in 4 s"
    assert back.state == "ok" and back.counters["reconnects"] >= attempts_while_down
    assert back.counters["read_errors"] == 1  # one outage, one lost connection


def test_stalled_camera_times_out_and_reconnects(rtsp_server: LocalRtspServer, redis_server) -> None:
    read_timeout_s = 1.0
    camera = rtsp_camera("stall", rtsp_server.url("h264-30"), 30)
    with capturing(camera, redis_server.url, read_timeout_s=read_timeout_s) as worker:
        assert wait_until(lambda: worker.stats.frames >= 30, 20, 0.05)
        rtsp_server.stall("h264-30")  # the connection stays open, nothing more is sent
        stalled_at = time.monotonic()
        assert wait_until(lambda: worker.stats.state == "reconnecting", 10, 0.02), worker.health()
        took = time.monotonic() - stalled_at
        health = worker.health()
        rtsp_server.resume("h264-30")
        frames_before = worker.stats.frames
        assert wait_until(lambda: worker.stats.frames > frames_before + 30 and worker.stats.state == "ok", 20, 0.05)
    assert health.state == "reconnecting" and "read time-out" in health.message
    assert read_timeout_s <= took <= read_timeout_s + 1.0, f"reconnecting {took:.2f} s after the stream stalled"


def test_resolution_change_mid_stream_adapts_without_corrupt_frames(rtsp_server: LocalRtspServer,
                                                                   rtsp_footage: dict[str, Path], redis_server) -> None:
    small, big = decoded_frames(rtsp_footage["h264-30"]), decoded_frames(rtsp_footage["h264-30-big"])
    expected = small + big  # the mount sends 320x240, then 640x480, then again
    watcher = RingWatcher(StreamBus(redis_server.url), "resize")
    watcher.start()
    with capturing(rtsp_camera("resize", rtsp_server.url("resize"), 30), redis_server.url) as worker:
        assert wait_until(lambda: worker.stats.frames >= len(small) + 60, 40, 0.1), worker.health()
        health = worker.health()
    watcher.halt.set()
    watcher.join(timeout=5)
    after_change = [seq for seq in watcher.frames if seq >= len(small)]
    assert len(after_change) >= 50
    assert health.state == "ok" and worker.stats.read_errors == 0  # adapted, no reconnect
    quality = {seq: cv2.PSNR(frame, expected[seq % len(expected)]) for seq, frame in watcher.frames.items()}
    corrupt = {seq: round(q, 1) for seq, q in quality.items() if q < 35}
    assert not corrupt, f"frames unlike the camera's picture at that position (PSNR dB): {dict(list(corrupt.items())[:10])}"
    assert all(frame.shape == (HEIGHT, WIDTH, 3) for frame in watcher.frames.values())


def test_six_rtsp_cameras_in_one_capture_process(rtsp_server: LocalRtspServer, redis_server, tmp_path: Path) -> None:
    mounts = {"cam1": ("h264-25", 25), "cam2": ("h265-30", 30), "cam3": ("h264-30", 30),
              "cam4": ("h265-60", 60), "cam5": ("h264-60", 60), "cam6": ("h264-25", 25)}
    site = {"site": "rtsp-test", "defaults": {"width": WIDTH, "height": HEIGHT},
            "cameras": [{"id": cid, "role": "master" if cid == "cam1" else "slave", "fps": fps,
                         "source": rtsp_server.url(mount)} for cid, (mount, fps) in mounts.items()]}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    (tmp_path / "logs").mkdir()
    runner = ServiceRunner({**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(tmp_path / "site.yaml"),
                            "HYBRIDCAM_CAPTURE_HEALTH_INTERVAL_S": "0.5"}, tmp_path / "logs")
    bus = StreamBus(redis_server.url)

    def latest() -> dict[str, Health]:
        return {e.message.camera_id: e.message for e in bus.read_all(HEALTH_STREAM) if isinstance(e.message, Health)}

    def all_at_rate() -> bool:
        health = latest()
        return len(health) == 6 and all(
            health[cid].state == "ok" and health[cid].counters["fps"] >= 0.85 * fps for cid, (_, fps) in mounts.items())

    try:
        runner.start("capture")
        assert wait_until(all_at_rate, 40, 0.5), f"{ {c: (h.state, h.counters['fps']) for c, h in latest().items()} }\n{runner.logs()}"
        assert all(bus.redis.xlen(frames_stream(cid)) > 25 for cid in mounts)
    finally:
        runner.stop_all()
