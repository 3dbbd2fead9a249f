"""Poison entries: out-of-range values are refused at decode, and an entry that keeps failing
is dead-lettered after a bounded number of deliveries instead of crash-looping its consumer."""

from __future__ import annotations

import math
import time

import msgpack
import numpy as np
import pytest

from services.edge_infer.inference_loop import InferenceLoop
from shared.frame_ring import encode_jpeg
from shared.schemas import Detection, FrameRef, SchemaError, decode
from shared.stream_bus import DEADLETTER_STREAM, DETECTIONS_STREAM, PAYLOAD_FIELD, StreamBus, frames_stream
from vision.detectors.registry import load_detector


def _frame_ref_body(**fields) -> bytes:
    body = {"schema": "frame_ref", "v": 1, "camera_id": "cam", "seq": 1, "capture_ts": time.time(),
            "width": 64, "height": 48, **fields}
    return msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize("fields", [
    {"capture_ts": math.inf},
    {"capture_ts": math.nan},
    {"capture_ts": 1e20},
    {"capture_ts": -5.0},
    {"slot": 10**9},
    {"width": 10**7},
    {"seq": 2**63 + 5},
])
def test_out_of_range_frame_refs_are_refused_at_decode(fields) -> None:
    with pytest.raises(SchemaError, match="malformed frame_ref"):
        decode(_frame_ref_body(**fields))


def test_boxes_and_scores_must_be_finite_and_in_range() -> None:
    with pytest.raises(ValueError):
        Detection(label="person", score=math.nan, box=(0, 0, 1, 1))
    with pytest.raises(ValueError):
        Detection(label="person", score=0.5, box=(0, 0, math.inf, 1))
    with pytest.raises(ValueError):
        Detection(label="person", score=0.5, box=(0, 0, 1e12, 1))


def test_deeply_nested_and_huge_messages_are_refused() -> None:
    nested: object = 1
    for _ in range(100):
        nested = [nested]
    with pytest.raises(SchemaError):
        decode(msgpack.packb({"schema": "frame_ref", "v": 1, "x": nested}))
    with pytest.raises(SchemaError, match="byte limit"):
        decode(b"\x00" * (20 * 1024 * 1024))


def test_inf_timestamp_entry_is_dead_lettered_not_crashing_edge_infer(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    loop = InferenceLoop(bus, load_detector("nanodet", intra_op_num_threads=1), [frames_stream("cam")],
                         "edge_infer", "test", max_frame_age_ms=60_000)
    loop.start()
    try:
        for ts in (math.inf, math.nan, 1e20):
            bus.redis.xadd(frames_stream("cam"), {PAYLOAD_FIELD: _frame_ref_body(capture_ts=ts)})
        good = FrameRef(camera_id="cam", seq=2, capture_ts=time.time(), width=64, height=48,
                        jpeg=encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
        bus.publish(frames_stream("cam"), good)
        loop.process(bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))
        assert bus.redis.xlen(DEADLETTER_STREAM) == 3
        assert [e.message.seq for e in bus.read_all(DETECTIONS_STREAM)] == [2]
        assert bus.redis.xpending(frames_stream("cam"), "edge_infer")["pending"] == 0
    finally:
        loop.close()


def test_entry_that_keeps_failing_is_dead_lettered_after_max_deliveries(redis_server) -> None:
    bus = StreamBus(redis_server.url, max_deliveries=3)
    stream = frames_stream("cam")
    bus.ensure_group(stream, "g", "0")
    bus.publish(stream, FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=4, height=4))
    assert len(bus.read_group([stream], "g", "crashing", block_ms=10)) == 1  # delivery 1, never acknowledged
    handed_out = 0
    for _ in range(5):
        handed_out += len(bus.claim_stale(stream, "g", "next", min_idle_ms=0))  # deliveries 2, 3, ...
    assert handed_out == 1  # delivery 2 handed out; delivery 3 reached the limit and was dead-lettered
    assert bus.redis.xpending(stream, "g")["pending"] == 0
    dead = bus.redis.xrange(DEADLETTER_STREAM)
    assert len(dead) == 1 and b"failed 3 deliveries" in dead[0][1][b"reason"]
    assert decode(dead[0][1][PAYLOAD_FIELD]).seq == 1  # the payload is recoverable


def test_edge_infer_survives_an_entry_that_raises_and_dead_letters_it(redis_server, monkeypatch) -> None:
    bus = StreamBus(redis_server.url, max_deliveries=2)
    detector = load_detector("nanodet", intra_op_num_threads=1)
    loop = InferenceLoop(bus, detector, [frames_stream("cam")], "edge_infer", "test", max_frame_age_ms=60_000,
                         claim_idle_ms=0)
    loop.start()
    monkeypatch.setattr(detector, "detect", lambda pixels: (_ for _ in ()).throw(RuntimeError("model blew up")))
    try:
        bus.publish(frames_stream("cam"), FrameRef(camera_id="cam", seq=1, capture_ts=time.time(), width=64, height=48,
                                                   jpeg=encode_jpeg(np.zeros((48, 64, 3), np.uint8))))
        loop.process(bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))  # delivery 1 fails
        loop._claim_orphans()  # delivery 2 reaches the limit
        assert loop.counters["cam"].dropped["failed"] == 1
        assert bus.redis.xlen(DEADLETTER_STREAM) == 1
        assert bus.redis.xpending(frames_stream("cam"), "edge_infer")["pending"] == 0
    finally:
        loop.close()


def test_skips_are_tallied_in_redis_with_their_acknowledgement(redis_server) -> None:
    from services.edge_infer.inference_loop import SKIP_TALLY_KEY

    bus = StreamBus(redis_server.url)
    loop = InferenceLoop(bus, load_detector("nanodet", intra_op_num_threads=1), [frames_stream("cam")],
                         "edge_infer", "test", max_frame_age_ms=1000)
    loop.start()
    try:
        jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8))
        bus.publish(frames_stream("cam"), FrameRef(camera_id="cam", seq=1, capture_ts=time.time() - 60, width=64, height=48, jpeg=jpeg))
        loop.process(bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))
        for seq in range(2, 5):
            bus.publish(frames_stream("cam"), FrameRef(camera_id="cam", seq=seq, capture_ts=time.time(), width=64, height=48, jpeg=jpeg))
        loop.process(bus.read_group(loop.streams, loop.group, loop.consumer, block_ms=200))
        tally = {k.decode(): int(v) for k, v in bus.redis.hgetall(SKIP_TALLY_KEY).items()}
        assert tally == {"cam.stale": 1, "cam.backlog": 2}
    finally:
        loop.close()
