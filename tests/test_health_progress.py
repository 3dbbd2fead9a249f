"""Health follows progress: a service whose loop stopped turning leaves "ok", and a long stall
ends the process so its restart policy can act; per-tick state stays bounded."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from services.compositor.program import Program
from services.compositor.settings import CompositorSettings
from services.edge_infer.inference_loop import InferenceLoop
from shared.progress import EXIT_STALLED, Progress
from shared.site_config import parse_site
from shared.stream_bus import StreamBus, frames_stream
from vision.detectors.registry import load_detector

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_progress_degrades_then_fails_as_it_ages() -> None:
    progress = Progress(stall_after_s=1.0, fail_after_s=3.0)
    assert progress.state() == ("ok", "")
    progress.last -= 2.0
    assert progress.state()[0] == "degraded"
    progress.last -= 2.0
    state, message = progress.state()
    assert state == "failed" and "no progress for" in message
    progress.beat()
    assert progress.state("degraded", "redis refuses") == ("degraded", "redis refuses")


def test_a_long_stall_ends_the_process_with_exit_70() -> None:
    script = (
        "import time\n"
        "from shared.progress import Progress, exit_on_stall\n"
        "p = Progress(stall_after_s=0.2, fail_after_s=0.5)\n"
        "exit_on_stall(p, 1.0, 'test loop', check_every_s=0.1)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_STALLED
    assert time.monotonic() - started < 10
    assert "made no progress" in result.stderr


def test_edge_infer_health_leaves_ok_when_its_loop_stops(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    loop = InferenceLoop(bus, load_detector("nanodet", intra_op_num_threads=1), [frames_stream("cam")], "edge_infer", "t")
    loop.start()
    try:
        assert loop.health().state == "ok"
        loop.progress.last -= 60  # the loop has not turned for a minute (hung in a call)
        health = loop.health()
        assert health.state == "failed" and health.counters["progress_age_s"] >= 60
    finally:
        loop.close()


def _program(redis_url: str, tmp_path: Path) -> Program:
    site = parse_site({"site": "t", "defaults": {"width": 160, "height": 90, "fps": 10},
                       "cameras": [{"id": "wide", "role": "master", "source": "synthetic"}]})
    settings = CompositorSettings(redis_url=redis_url, compositor_width=320, compositor_height=180, compositor_fps=10,
                                  compositor_outputs="", compositor_output_dir=tmp_path)
    return Program(settings, site.resolved(), StreamBus(redis_url), [])


def test_compositor_health_follows_its_pictures(redis_server, tmp_path: Path) -> None:
    program = _program(redis_server.url, tmp_path)
    program.follower.latest["wide"] = (None, time.time())  # type: ignore[assignment]
    assert program.health().state == "ok"
    program.progress.last -= 60
    assert program.health().state == "failed"


def test_compositor_memory_does_not_grow_per_tick(redis_server, tmp_path: Path) -> None:
    program = _program(redis_server.url, tmp_path)
    program.stats.started = time.time()
    from services.compositor.edit_decision_list import EditDecisionList

    program.edl = EditDecisionList(tmp_path / "edl.jsonl", program.stats.started)
    program._shown_capture_ts = time.time()
    start, pts = time.time(), -1
    for _ in range(200):  # warm-up
        pts = program._tick(time.time(), start, pts)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(2000):
        pts = program._tick(time.time(), start, pts)
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
                if "compositor" in str(stat.traceback))
    tracemalloc.stop()
    program.encoder.close()
    assert grown < 20_000, f"compositor code kept {grown} more bytes after 2000 ticks"


def test_waiting_for_redis_is_degraded_not_a_stall(tmp_path: Path) -> None:
    import threading

    from devstack.servers import free_port

    bus = StreamBus(f"redis://127.0.0.1:{free_port()}/0", max_backoff_s=0.1, give_up_after_s=1.5)
    progress = Progress(stall_after_s=0.5, fail_after_s=1.0)
    beats: list[float] = []
    bus.on_retry = lambda: (beats.append(time.monotonic()), progress.beat())
    progress.last -= 10
    def wait_for_redis() -> None:
        try:
            bus.call(lambda: bus.redis.ping(), "ping")
        except Exception:  # noqa: BLE001 (gives up after 1.5 s: nothing listens there)
            pass

    waiting = threading.Thread(target=wait_for_redis, daemon=True)
    waiting.start()
    waiting.join(10)
    assert beats and progress.age_s() < 5  # beaten on each retry while Redis was away (it was 10 s old)
    assert bus.refusing.startswith("redis unreachable")
