"""Bad input never stops the edge: clear errors for bad configuration, counted drops for bad data."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest

from services.edge_infer.inference_loop import InferenceLoop
from shared.frame_ring import FrameRingWriter, encode_jpeg
from shared.schemas import FrameRef
from shared.stream_bus import DEADLETTER_STREAM, DETECTIONS_STREAM, PAYLOAD_FIELD, StreamBus, frames_stream
from tests.fixtures.pipeline import ServiceRunner, wait_until
from tests.fixtures.servers import TEST_DATA
from vision.detectors.registry import load_detector


@pytest.fixture(scope="module")
def detector():
    return load_detector("nanodet", intra_op_num_threads=1)


@pytest.fixture()
def loop(redis_server, detector):
    bus = StreamBus(redis_server.url)
    inference = InferenceLoop(bus, detector, [frames_stream("cam")], "edge_infer", "test", max_frame_age_ms=60_000)
    inference.start()
    yield inference
    inference.close()


def _read_and_process(loop: InferenceLoop) -> None:
    loop.process(loop.bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))


def _ref(**fields) -> FrameRef:
    base = dict(camera_id="cam", seq=1, capture_ts=time.time(), width=640, height=424)
    return FrameRef(**{**base, **fields})


def test_good_frame_after_bad_ones_is_still_detected(loop) -> None:
    person = cv2.imread(str(TEST_DATA / "person.jpg"))
    stream = frames_stream("cam")
    loop.bus.publish(stream, _ref(seq=1, jpeg=b"\xff\xd8corrupt"))
    _read_and_process(loop)
    loop.bus.publish(stream, _ref(seq=2, jpeg=encode_jpeg(np.zeros((10, 10, 3), np.uint8))))  # wrong shape
    _read_and_process(loop)
    loop.bus.redis.xadd(stream, {PAYLOAD_FIELD: b"\x93\x01\x02"})  # malformed message
    loop.bus.redis.xadd(stream, {PAYLOAD_FIELD: msgpack.packb({"schema": "frame_ref", "v": 7})})  # unknown version
    _read_and_process(loop)
    loop.bus.publish(stream, _ref(seq=3, jpeg=encode_jpeg(person)))
    _read_and_process(loop)

    counters = loop.counters["cam"]
    assert counters.dropped["ValueError"] == 2
    assert loop.bus.counters["dead_lettered"] == 2
    assert loop.bus.redis.xlen(DEADLETTER_STREAM) == 2
    results = [e.message for e in loop.bus.read_all(DETECTIONS_STREAM)]
    assert [r.seq for r in results] == [3]
    assert any(d.label == "person" and d.score > 0.5 for d in results[0].detections)
    assert loop.bus.redis.xpending(stream, "edge_infer")["pending"] == 0


def test_overwritten_slot_is_a_counted_drop(loop) -> None:
    ring = FrameRingWriter("hybridcam_cam_badinput", 64, 48, slots=2)
    try:
        refs = [ _ref(seq=s, width=64, height=48, shm_name=ring.name, slot=ring.write(np.zeros((48, 64, 3), np.uint8), s, 0)) for s in range(3)]
        loop.bus.publish(frames_stream("cam"), refs[0])  # slot 0 already holds frame 2
        _read_and_process(loop)
        assert loop.counters["cam"].dropped["FrameGone"] == 1
    finally:
        ring.close()


def test_stale_and_backlog_frames_are_skipped_not_queued(loop) -> None:
    person = encode_jpeg(cv2.imread(str(TEST_DATA / "person.jpg")))
    stream = frames_stream("cam")
    loop.bus.publish(stream, _ref(seq=1, capture_ts=time.time() - 120, jpeg=person))
    _read_and_process(loop)
    for seq in range(10, 15):
        loop.bus.publish(stream, _ref(seq=seq, jpeg=person))
    _read_and_process(loop)
    results = [e.message for e in loop.bus.read_all(DETECTIONS_STREAM)]
    assert [r.seq for r in results] == [14]  # only the newest of the backlog
    assert loop.counters["cam"].skipped_stale == 1
    assert loop.counters["cam"].skipped_backlog == 4


@pytest.fixture()
def cli(redis_server, tmp_path: Path):
    import os

    (tmp_path / "logs").mkdir()
    runner = ServiceRunner({**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url}, tmp_path / "logs")
    yield runner
    runner.stop_all()


def test_missing_model_is_one_clear_error(cli) -> None:
    result = cli.run("edge-infer", "--model", "/nonexistent/model.onnx", "--duration", "1")
    assert result.returncode == 2
    assert "cannot load model" in result.stderr and "Traceback" not in result.stderr


def test_bad_yaml_names_the_line(cli, tmp_path: Path) -> None:
    site = tmp_path / "bad.yaml"
    site.write_text("site: x\ncameras:\n  - id: a\n    source: [unclosed\n")
    result = cli.run("capture", "--site", str(site), "--duration", "1")
    assert result.returncode == 2
    assert "not valid YAML at line" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_value_names_the_field(cli, tmp_path: Path) -> None:
    site = tmp_path / "bad.yaml"
    site.write_text("site: x\ncameras:\n  - {id: a, source: synthetic, role: boss}\n")
    result = cli.run("capture", "--site", str(site), "--duration", "1")
    assert result.returncode == 2 and "cameras.0.role" in result.stderr
    cli.env["HYBRIDCAM_STREAM_MAXLEN"] = "lots"
    result = cli.run("edge-infer", "--duration", "1")
    assert result.returncode == 2 and "HYBRIDCAM_STREAM_MAXLEN" in result.stderr


def test_unsupported_camera_url_is_rejected(cli, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: x\ncameras:\n  - {id: a, source: 'ftp://camera/stream', role: master}\n")
    result = cli.run("capture", "--site", str(site), "--duration", "1")
    assert result.returncode == 2 and "unsupported source" in result.stderr


def test_unreachable_camera_is_retried_while_the_others_run(cli, redis_server, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: x\ndefaults: {width: 320, height: 180, fps: 5}\ncameras:\n"
        "  - {id: gone, source: 'rtsp://127.0.0.1:9/nothing', role: slave}\n"
        "  - {id: ok, source: synthetic, role: master}\n"
    )
    cli.env["HYBRIDCAM_CAPTURE_HEALTH_INTERVAL_S"] = "0.5"
    process = cli.start("capture", "--site", str(site))
    bus = StreamBus(redis_server.url)

    def states() -> dict:
        from shared.stream_bus import HEALTH_STREAM

        return {e.message.camera_id: e.message.state for e in bus.read_all(HEALTH_STREAM)}

    assert wait_until(lambda: states().get("gone") == "reconnecting" and bus.redis.xlen("frames:ok") > 5, 30), cli.logs()
    assert process.poll() is None
