"""Results bridge against a real redis-server and the moto SQS server."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
import redis

from services.results_bridge.service import ResultsBridge, detection_set_of
from services.results_bridge.settings import BridgeSettings
from shared.result_counters import CLOUD_RESULT_COUNTERS_KEY, dedup_key
from shared.schemas import Alert, CloudResult, Detection, DetectionSet, encode_text, frame_id_of
from shared.site_config import parse_site
from shared.stream_bus import ALERTS_STREAM, DEADLETTER_STREAM, DETECTIONS_STREAM, StreamBus

SITE = parse_site({"site": "t", "defaults": {"width": 1280, "height": 720},
                   "cameras": [{"id": "wide", "role": "master", "source": "synthetic"}]})


def result(seq: int, width: int = 1280, height: int = 720, alerts: list[str] | None = None) -> CloudResult:
    capture_ts = 1767225600.0 + seq
    return CloudResult(site="t", frame_id=frame_id_of("wide", seq, capture_ts), camera_id="wide", seq=seq,
                       capture_ts=capture_ts, processed_ts=capture_ts + 0.5, width=width, height=height,
                       backend="rekognition", model="rekognition-local", s3_key=f"wide/{seq}.jpg", alerts=alerts or [],
                       detections=[Detection(label="Person", score=0.9, box=(64.0, 36.0, 320.0, 360.0))])


@pytest.fixture()
def queue_url(aws_env: dict[str, str]) -> str:
    return boto3.client("sqs").create_queue(QueueName=f"results-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def make_bridge(redis_url: str, queue_url: str, **settings: object) -> ResultsBridge:
    values = {"redis_url": redis_url, "bridge_queue_url": queue_url, "bridge_wait_time_s": 0,
              "bridge_visibility_timeout_s": 1, **settings}
    bus = StreamBus(redis_url, give_up_after_s=1.0)
    return ResultsBridge(BridgeSettings(**values), SITE, bus, boto3.client("sqs"))


def drain(bridge: ResultsBridge, polls: int = 5) -> None:
    for _ in range(polls):
        bridge.poll_once()


def queue_depth(queue_url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def test_results_become_cloud_detections_once_each_and_malformed_bodies_are_dead_lettered(redis_server, queue_url) -> None:
    sqs = boto3.client("sqs")
    bodies = [encode_text(result(0, alerts=["Person"])), encode_text(result(10)), encode_text(result(0, alerts=["Person"])),
              "not base64 at all!", encode_text(result(20))]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    bridge = make_bridge(redis_server.url, queue_url)
    drain(bridge)

    bus = StreamBus(redis_server.url)
    published = [e.message for e in bus.read_all(DETECTIONS_STREAM)]
    assert sorted(m.seq for m in published) == [0, 10, 20]  # the redelivered frame 0 is published once
    assert all(isinstance(m, DetectionSet) and m.source == "cloud" and m.provider == "rekognition" for m in published)
    assert all(m.count("Person") == 1 for m in published)
    assert bridge.counters["duplicates"] == 1 and bridge.counters["malformed"] == 1
    [dead] = bus.redis.xrange(DEADLETTER_STREAM)
    assert dead[1][b"m"] == b"not base64 at all!" and b"base64" in dead[1][b"reason"]
    ttl = bus.redis.ttl(dedup_key(result(10).frame_id))
    assert 0 < ttl <= 86_400
    assert bus.redis.hget(CLOUD_RESULT_COUNTERS_KEY, "alerts") == b"1"
    [alert] = [e.message for e in bus.read_all(ALERTS_STREAM)]  # the duplicate raised no second alert
    assert isinstance(alert, Alert) and (alert.camera_id, alert.label, alert.s3_key) == ("wide", "Person", "wide/0.jpg")
    assert alert.score == 0.9 and alert.frame_id == result(0).frame_id
    assert queue_depth(queue_url) == 0  # everything handled was deleted


def test_a_message_stays_on_the_queue_until_its_stream_write_succeeded(redis_server, queue_url) -> None:
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=encode_text(result(30)))
    bridge = make_bridge(redis_server.url, queue_url)
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        bridge.poll_once()
    assert queue_depth(queue_url) == 1

    redis_server.start()
    bridge = make_bridge(redis_server.url, queue_url, bridge_wait_time_s=2)
    drain(bridge)  # the message is visible again after its 1 s visibility timeout
    published = StreamBus(redis_server.url).read_all(DETECTIONS_STREAM)
    assert [e.message.seq for e in published] == [30]
    assert queue_depth(queue_url) == 0


def test_boxes_are_scaled_back_to_the_cameras_pixels_when_the_sampler_sent_a_smaller_jpeg() -> None:
    camera = SITE.camera("wide")
    small = result(40, width=640, height=360)
    detections = detection_set_of(small, camera, now=small.capture_ts + 1.0)
    assert (detections.width, detections.height) == (1280, 720)
    assert detections.detections[0].box == (128.0, 72.0, 640.0, 720.0)
    assert detections.latency_ms == pytest.approx(1000.0)


def test_the_command_refuses_to_start_without_a_queue(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "HYBRIDCAM_BRIDGE_QUEUE_URL": ""}
    completed = subprocess.run([sys.executable, "-m", "hybridcam", "results-bridge"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "HYBRIDCAM_BRIDGE_QUEUE_URL" in completed.stderr and "Traceback" not in completed.stderr


def test_an_unreachable_queue_degrades_the_bridge_which_goes_on_when_it_is_back(redis_server, queue_url) -> None:
    import threading

    from botocore.config import Config

    from devstack.servers import free_port
    from tests.fixtures.pipeline import wait_until

    bridge = make_bridge(redis_server.url, queue_url)
    bridge.max_backoff_s = 0.3
    bridge.sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{free_port()}",
                              config=Config(connect_timeout=0.5, retries={"total_max_attempts": 1}))
    stop = threading.Event()
    runner = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: bridge.counters["poll_errors"] >= 2, 15)
        assert runner.is_alive()
        state, message = bridge.state()
        assert state == "degraded" and "unreachable" in message
        boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=encode_text(result(3)))
        bridge.sqs = boto3.client("sqs")  # the network is back
        assert wait_until(lambda: bridge.counters["published"] == 1, 15)
        assert bridge.state() == ("ok", "")
    finally:
        stop.set()
        runner.join(10)
