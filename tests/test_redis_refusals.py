"""Redis refusing writes (out of memory under noeviction) is waited out, and a camera thread
that fails unexpectedly is restarted by its supervisor and says so in health."""

from __future__ import annotations

import threading
import time

import numpy as np
import redis

from services.capture.camera_worker import CameraStats, CameraWorker
from services.capture.sources import SourceError
from shared.schemas import FrameRef
from shared.site_config import ResolvedCamera
from shared.stream_bus import StreamBus, frames_stream
from tests.fixtures.pipeline import wait_until


def _camera(camera_id: str = "cam", fps: float = 20) -> ResolvedCamera:
    return ResolvedCamera(id=camera_id, name=camera_id, source="synthetic", role="slave", width=32, height=24,
                          fps=fps, cloud_sample_every=1, covers=None)


class _ScriptedSource:
    """Grey frames; raises whatever ``failures`` holds for the reads it names."""

    description = "scripted test source"
    paced_by_source = False

    def __init__(self, failures: dict[int, Exception] | None = None) -> None:
        self.failures = failures or {}
        self.reads = 0

    def open(self) -> None:
        return None

    def read_into(self, out: np.ndarray, seq: int) -> None:
        self.reads += 1
        error = self.failures.pop(self.reads, None)
        if error is not None:
            raise error
        out[:] = seq % 255

    def close(self) -> None:
        return None


def test_publish_waits_out_an_out_of_memory_refusal(redis_server) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory-policy", "noeviction")
    bus = StreamBus(redis_server.url, max_backoff_s=0.2)
    ref = FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=4, height=4)
    admin.config_set("maxmemory", 1)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (bus.publish("frames:cam", ref), done.set()), daemon=True)
    worker.start()
    assert wait_until(lambda: bus.counters["redis_refusals"] >= 2, 10)
    assert not done.is_set() and bus.refusing.startswith("redis refuses")
    admin.config_set("maxmemory", 0)
    assert done.wait(5), "publish did not resume after memory was freed"
    assert admin.xlen("frames:cam") == 1 and bus.refusing == ""


def test_camera_thread_is_restarted_after_an_unexpected_failure(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    stop = threading.Event()
    source = _ScriptedSource({5: RuntimeError("decoder state corrupted")})
    worker = CameraWorker(_camera(), source, bus, stop, ring_slots=2, reconnect_max_s=0.2)
    worker.start()
    try:
        assert wait_until(lambda: bus.redis.xlen(frames_stream("cam")) >= 15, 20)
        assert worker.is_alive()
        health = worker.health()
        assert health.counters["restarts"] == 1
        assert "RuntimeError" in worker.stats.message or health.state == "ok"
    finally:
        stop.set()
        worker.join(5)


def test_camera_keeps_capturing_through_a_redis_memory_squeeze(redis_server) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory-policy", "noeviction")
    bus = StreamBus(redis_server.url, max_backoff_s=0.2)
    stop = threading.Event()
    worker = CameraWorker(_camera(), _ScriptedSource(), bus, stop, ring_slots=2)
    worker.start()
    try:
        assert wait_until(lambda: admin.xlen(frames_stream("cam")) >= 5, 10)
        admin.config_set("maxmemory", 1)
        assert wait_until(lambda: bus.counters["redis_refusals"] >= 1, 5)
        time.sleep(1.0)
        assert worker.is_alive()
        admin.config_set("maxmemory", 0)
        before = admin.xlen(frames_stream("cam"))
        assert wait_until(lambda: admin.xlen(frames_stream("cam")) >= before + 10, 10)
        assert worker.is_alive() and worker.health().state == "ok"
    finally:
        admin.config_set("maxmemory", 0)
        stop.set()
        worker.join(5)


def test_fps_reads_zero_and_state_degrades_when_frames_stop() -> None:
    stats = CameraStats(state="ok")
    for i in range(20):
        stats.frame_published(100.0 + i * 0.1)
    assert 9.0 < stats.fps_at(102.0) < 11.0
    assert stats.progress_state(102.0, stall_after_s=2.0)[0] == "ok"
    assert stats.fps_at(110.0) == 0.0  # a hung read shows no progress, not the old rate
    state, message = stats.progress_state(110.0, stall_after_s=2.0)
    assert state == "degraded" and "no frame for" in message
    assert stats.progress_state(200.0, stall_after_s=2.0)[0] == "failed"  # stuck, not a camera outage: restart it


def test_source_errors_still_reconnect_rather_than_restart(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    stop = threading.Event()
    worker = CameraWorker(_camera(), _ScriptedSource({3: SourceError("stream ended")}), bus, stop, ring_slots=2)
    worker.start()
    try:
        assert wait_until(lambda: bus.redis.xlen(frames_stream("cam")) >= 8, 10)
        assert worker.stats.read_errors == 1 and worker.stats.restarts == 0
    finally:
        stop.set()
        worker.join(5)


class _AlwaysFailingSource(_ScriptedSource):
    """Opens fine, then every read fails (a camera that accepts and hangs up at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read_into(self, out: np.ndarray, seq: int) -> None:
        raise SourceError("connection closed by the camera")


def test_a_source_failing_right_after_open_backs_off_instead_of_spinning(redis_server, caplog) -> None:
    bus = StreamBus(redis_server.url)
    stop = threading.Event()
    source = _AlwaysFailingSource()
    worker = CameraWorker(_camera(), source, bus, stop, ring_slots=2, reconnect_max_s=10.0)
    with caplog.at_level("INFO", logger="services.capture.camera_worker"):
        worker.start()
        time.sleep(6.0)
        stop.set()
        worker.join(5)
    assert 2 <= source.opens <= 6  # 0.5 + 1 + 2 + 4 s of backoff: a spinning loop opens thousands of times
    assert worker.stats.reconnects <= source.opens
    assert len([r for r in caplog.records if r.levelno >= 30]) <= 2  # one line for the outage, not one per attempt


def test_the_redis_password_setting_reaches_the_url_and_never_the_logs(tmp_path) -> None:
    from devstack.servers import LocalRedis
    from shared.settings import CommonSettings, redacted_url

    server = LocalRedis(data_dir=tmp_path)
    server.start()
    try:
        redis.Redis.from_url(server.url).config_set("requirepass", "s3cret/pw")
        settings = CommonSettings(redis_url=server.url, redis_password="s3cret/pw")
        bus = StreamBus(settings.redis_url)
        bus.publish("frames:cam", FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=4, height=4))
        assert bus.redis.xlen("frames:cam") == 1
        assert "s3cret" not in redacted_url(settings.redis_url) and "***" in redacted_url(settings.redis_url)
        with __import__("pytest").raises(redis.AuthenticationError):
            redis.Redis.from_url(server.url).ping()
    finally:
        redis.Redis.from_url(settings.redis_url).config_set("requirepass", "")
        server.stop()
