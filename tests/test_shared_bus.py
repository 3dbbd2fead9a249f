"""Stream bus, schemas and frame ring against a real redis-server."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest

from shared.frame_ring import FrameFetcher, FrameGone, FrameRingWriter, encode_jpeg
from shared.schemas import Detection, DetectionSet, FrameRef, Health, SchemaError, decode
from shared.stream_bus import DEADLETTER_STREAM, PAYLOAD_FIELD, StreamBus, parse_xautoclaim_entries


def _detection_set(seq: int = 1) -> DetectionSet:
    return DetectionSet(
        camera_id="cam", seq=seq, frame_id=f"cam-{seq}", capture_ts=1.0, width=640, height=480,
        model="nanodet", provider="CPUExecutionProvider", latency_ms=3.0,
        detections=[Detection(label="person", class_id=0, score=0.9, box=(1, 2, 3, 4))],
    )


def test_envelopes_round_trip() -> None:
    for message in (
        _detection_set(),
        FrameRef(camera_id="c", seq=3, capture_ts=2.5, width=4, height=2, shm_name="r", slot=1),
        Health(service="capture", instance="x", state="ok", counters={"fps": 15.0}),
    ):
        assert decode(message.encode()) == message


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\xc1garbage", "not a msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"schema": "detection_set", "v": 99}), "unknown schema"),
        (msgpack.packb({"schema": "frame_ref", "v": 1, "camera_id": "c"}), "malformed frame_ref"),
    ],
)
def test_bad_messages_raise_schema_error(raw: bytes, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        decode(raw)


def test_malformed_entries_go_to_dead_letter_and_are_acked(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.ensure_group("s", "g", "0")
    bus.redis.xadd("s", {PAYLOAD_FIELD: b"junk"})
    bus.publish("s", _detection_set(7))
    entries = bus.read_group(["s"], "g", "c1", block_ms=100)
    assert [e.message.seq for e in entries] == [7]
    assert bus.counters["dead_lettered"] == 1
    dead = bus.redis.xrange(DEADLETTER_STREAM)
    assert dead[0][1][PAYLOAD_FIELD] == b"junk" and b"not a msgpack" in dead[0][1][b"reason"]
    pending = bus.redis.xpending("s", "g")
    assert pending["pending"] == 1  # only the good one, still unacknowledged


def test_dead_consumer_entries_are_claimed(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.ensure_group("s", "g", "0")
    bus.publish("s", _detection_set(1))
    assert len(bus.read_group(["s"], "g", "dead", block_ms=100)) == 1
    time.sleep(0.05)
    claimed = bus.claim_stale("s", "g", "alive", min_idle_ms=10)
    assert [e.message.seq for e in claimed] == [1]


@pytest.mark.parametrize(
    "reply", [[b"0-0", [(b"1-0", {b"m": b"x"})]], [b"0-0", [(b"1-0", {b"m": b"x"})], [b"2-0"]]]
)
def test_xautoclaim_reply_of_redis_6_and_7(reply) -> None:
    assert parse_xautoclaim_entries(reply) == [(b"1-0", {b"m": b"x"})]


def test_publish_and_ack_is_atomic_and_trimmed(redis_server) -> None:
    bus = StreamBus(redis_server.url, maxlen=100)
    bus.ensure_group("in", "g", "0")
    for i in range(3):
        bus.publish("in", _detection_set(i))
    ids = [e.entry_id for e in bus.read_group(["in"], "g", "c", block_ms=100)]
    bus.publish_and_ack("out", _detection_set(9), "in", "g", ids)
    assert bus.redis.xpending("in", "g")["pending"] == 0
    assert bus.redis.xlen("out") == 1
    for i in range(1000):
        bus.publish("big", _detection_set(i))
    assert bus.redis.xlen("big") < 300  # approximate MAXLEN keeps memory bounded


def test_bus_waits_out_a_redis_restart(redis_server) -> None:
    bus = StreamBus(redis_server.url)
    bus.publish("s", _detection_set(1))
    redis_server.stop()
    import threading

    restart = threading.Timer(1.0, redis_server.start)
    restart.start()
    bus.publish("s", _detection_set(2))  # blocks until Redis is back, then succeeds
    restart.join()
    assert bus.redis.xlen("s") == 2  # append-only file kept the first entry
    assert bus.counters["redis_reconnects"] >= 1


def test_frame_ring_shares_pixels_and_detects_lapping() -> None:
    writer = FrameRingWriter("hybridcam_test_ring", width=64, height=48, slots=3)
    fetcher = FrameFetcher()
    try:
        frames = [np.full((48, 64, 3), i, np.uint8) for i in range(5)]
        refs = []
        for seq, frame in enumerate(frames):
            slot = writer.write(frame, seq, float(seq))
            refs.append(FrameRef(camera_id="c", seq=seq, capture_ts=float(seq), width=64, height=48,
                                 shm_name=writer.name, slot=slot))
        assert (fetcher.fetch(refs[4]) == 4).all()
        with pytest.raises(FrameGone):
            fetcher.fetch(refs[0])  # slot 0 now holds frame 3
        with pytest.raises(ValueError, match="does not fit"):
            writer.write(np.zeros((10, 10, 3), np.uint8), 9, 0)
    finally:
        fetcher.close()
        writer.close()


def test_inline_jpeg_for_remote_consumers() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    ref = FrameRef(camera_id="c", seq=0, capture_ts=0, width=64, height=48, jpeg=encode_jpeg(frame))
    assert FrameFetcher().fetch(ref).shape == (48, 64, 3)
    corrupt = ref.model_copy(update={"jpeg": b"\xff\xd8not really"})
    with pytest.raises(ValueError, match="not a decodable image"):
        FrameFetcher().fetch(corrupt)
