"""The whole cloud path with real parts: redis-server, the moto server, the local model server (a real detector).

frames (real photo in shared memory) -> sampler process (every 10th master frame) -> Kinesis -> local event
source poller -> the unchanged Lambda handler -> S3 object, DynamoDB item, SNS alert (read back through an SQS
subscription), SQS result -> results-bridge process -> the edge detection stream.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from cloud.local.event_source_poller import EventSourcePoller, load_handler
from cost_model.run_counters import load_run_counters
from devstack.local_cloud import LocalCloud, start_local_cloud
from shared.result_counters import CLOUD_RESULT_COUNTERS_KEY
from shared.schemas import CloudFrame, DetectionSet
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.fixtures.cloud_edge import FramePublisher, kinesis_frames, write_cloud_site
from tests.fixtures.pipeline import ServiceRunner, wait_until

HANDLER_ATTEMPTS_PER_CALL = 4  # detector_lambda/detectors.py Backoff.attempts: throttle that often and the record fails once


@pytest.fixture()
def local_cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    cloud = start_local_cloud(tmp_path / "run", f"hc-e2e-{uuid.uuid4().hex[:6]}", alert_cooldown_s=0, min_confidence=50)
    try:
        yield cloud
    finally:
        cloud.stop()


def subscribe_alert_copy(topic_arn: str) -> str:
    """moto skips AWS::SNS::Subscription: subscribe a queue to the alert topic to read alerts back."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"alert-copy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def drain(queue_url: str) -> list[str]:
    sqs, bodies = boto3.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def cloud_detections(bus: StreamBus) -> list[DetectionSet]:
    return [e.message for e in bus.read_all(DETECTIONS_STREAM)
            if isinstance(e.message, DetectionSet) and e.message.source == "cloud"]


def test_sampled_frames_make_the_round_trip_exactly_once_despite_a_poison_record_and_throttling(
    redis_server, local_cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = local_cloud.outputs
    stream = outputs["StreamName"]
    cloud_env = local_cloud.environment()
    for name, value in cloud_env.items():  # the in-process poller runs the handler with the Lambda's configuration
        if not name.startswith("HYBRIDCAM_"):
            monkeypatch.setenv(name, value)
    alert_copy = subscribe_alert_copy(outputs["AlertTopicArn"])
    env = {**os.environ, **cloud_env, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml")), "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "1",
           "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.3", "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_SAMPLER_POLICY": "every_nth"}  # this test counts exact frames
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    master, slave = FramePublisher(bus, "wide"), FramePublisher(bus, "north")
    kinesis = boto3.client("kinesis")
    try:
        runner.start("sampler")
        runner.start("results-bridge")
        sent = master.publish(range(0, 30))
        slave.publish(range(0, 30))  # slaves never go to the cloud
        assert wait_until(lambda: len(kinesis_frames(stream)) == 3, 60), runner.logs()
        kinesis.put_record(StreamName=stream, Data=b"poison: not a cloud frame", PartitionKey="wide")
        sent += master.publish(range(30, 60))
        assert wait_until(lambda: len(kinesis_frames(stream)) == 7, 60), runner.logs()
        on_stream = kinesis_frames(stream)
        assert [f.seq for f in on_stream if isinstance(f, CloudFrame)] == [0, 10, 20, 30, 40, 50]
        assert on_stream[3] == b"poison: not a cloud frame"  # in the middle of the handler's batch of 10

        local_cloud.models.throttle(HANDLER_ATTEMPTS_PER_CALL)  # the first record's detection fails transiently
        poller = EventSourcePoller(stream, load_handler(), 10, tmp_path / "checkpoints.json", max_retries=2,
                                   retry_delay_s=0.0)
        poller.run_once()
        assert poller.dead_lettered == 0  # the function wrote the poison record to its dead-letter queue itself
        [letter] = [json.loads(body) for body in drain(outputs["FailedRecordsQueueUrl"])]
        assert base64.b64decode(letter["data"]) == b"poison: not a cloud frame"

        expected = {ref.frame_id for ref in sent if ref.seq % 10 == 0}
        assert wait_until(lambda: len(cloud_detections(bus)) >= 6, 60), runner.logs()
        assert wait_until(lambda: not drain_results_peek(outputs["ResultsQueueUrl"]), 30)
    finally:
        runner.stop_all()
        master.close()
        slave.close()

    # The edge got each sampled frame's cloud detections exactly once.
    detections = cloud_detections(bus)
    assert sorted(d.frame_id for d in detections) == sorted(expected)
    assert all(d.camera_id == "wide" and d.count("Person") >= 1 for d in detections)
    assert all(d.provider == "rekognition" and (d.width, d.height) == (640, 424) for d in detections)
    # One stored frame and one item per sampled frame.
    stored = boto3.client("s3").list_objects_v2(Bucket=outputs["FramesBucketName"], Prefix="frames/wide/").get("Contents", [])
    assert len(stored) == 6 and all(any(o["Key"].endswith(f"/{frame_id}.jpg") for o in stored) for frame_id in expected)
    items = boto3.client("dynamodb").scan(TableName=outputs["FramesTableName"])["Items"]
    assert sorted(i["pk"]["S"] for i in items if i["pk"]["S"].startswith("frame#")) == sorted(f"frame#{f}" for f in expected)
    # Alerts for the watched label, once per alerting result (no duplicates from the retries).
    alerts = [json.loads(body)["Message"] for body in drain(alert_copy)]
    assert alerts and all("Person" in text for text in alerts)
    assert len(alerts) == int(bus.redis.hget(CLOUD_RESULT_COUNTERS_KEY, "alerts") or 0)
    # The sampler's run counters read back by the cost command's loader.
    counters = load_run_counters(Path(cloud_env["HYBRIDCAM_SAMPLER_COUNTERS_FILE"]))
    assert (counters.frames_sampled, counters.records_sent, counters.cameras) == (6, 6, 1)
    assert counters.alerts == len(alerts)


def drain_results_peek(queue_url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())
