"""The local Kinesis event source: AWS event shape, batches, partial-failure retries, dead letters, checkpoints.

The last test runs the whole local cloud: the stack deployed into moto, the unchanged Lambda handler
fed by the poller, and the local model server answering Rekognition and SageMaker calls.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cloud.deploy import deploy_stack
from cloud.local.event_source_poller import EventSourcePoller, load_handler
from cloud.local.model_server import LocalModelServer, start_in_thread
from shared.schemas import CloudResult, decode_text
from tests.fixtures.cloud import make_frame

RECORD_KEYS = {"kinesis", "eventSource", "eventVersion", "eventID", "eventName", "invokeIdentityArn", "awsRegion",
               "eventSourceARN"}
KINESIS_KEYS = {"kinesisSchemaVersion", "partitionKey", "sequenceNumber", "data", "approximateArrivalTimestamp"}


def new_stream(records: int) -> str:
    kinesis = boto3.client("kinesis")
    name = f"poller-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    for index in range(records):
        kinesis.put_record(StreamName=name, Data=f"record-{index}".encode(), PartitionKey="cam1")
    return name


class RecordingHandler:
    """Fails the records named in fail_times as often as asked, and remembers every batch."""

    def __init__(self, fail_times: dict[str, int] | None = None) -> None:
        self.fail_times = dict(fail_times or {})
        self.batches: list[list[str]] = []
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        payloads = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
        self.batches.append(payloads)
        failures = []
        for record, payload in zip(event["Records"], payloads, strict=True):
            if self.fail_times.get(payload, 0) > 0:
                self.fail_times[payload] -= 1
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failures}


def test_events_have_the_aws_shape_and_respect_batch_size(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(7)
    handler = RecordingHandler()
    poller = EventSourcePoller(stream, handler, batch_size=3, checkpoint_path=tmp_path / "cp.json", max_retries=2)
    assert poller.run_once() == 7
    assert [len(batch) for batch in handler.batches] == [3, 3, 1]
    record = handler.events[0]["Records"][0]
    assert set(record) == RECORD_KEYS and set(record["kinesis"]) == KINESIS_KEYS
    assert record["eventSource"] == "aws:kinesis" and record["eventName"] == "aws:kinesis:record"
    assert record["eventID"] == f"shardId-000000000000:{record['kinesis']['sequenceNumber']}"
    assert record["eventSourceARN"].endswith(f":stream/{stream}") and record["awsRegion"] == "us-east-1"
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0" and record["kinesis"]["partitionKey"] == "cam1"
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)


def test_partial_failure_retries_from_the_first_failed_record(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(5)
    handler = RecordingHandler({"record-2": 2})
    poller = EventSourcePoller(stream, handler, batch_size=10, checkpoint_path=tmp_path / "cp.json",
                               max_retries=3, retry_delay_s=0.0)
    assert poller.run_once() == 5 and poller.dead_lettered == 0
    everything = [f"record-{i}" for i in range(5)]
    assert handler.batches == [everything, everything[2:], everything[2:]]


def test_poison_record_is_dead_lettered_and_the_shard_moves_on(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(5)
    handler = RecordingHandler({"record-1": 100})
    checkpoint = tmp_path / "cp.json"
    poller = EventSourcePoller(stream, handler, batch_size=10, checkpoint_path=checkpoint, max_retries=2,
                               retry_delay_s=0.0)
    assert poller.run_once() == 4 and poller.dead_lettered == 1
    assert len(handler.batches) == 1 + 2 + 1  # first try, two retries, then the rest after the dead letter
    assert handler.batches[-1] == ["record-2", "record-3", "record-4"]
    [dead] = [json.loads(line) for line in poller.dead_letter_path.read_text().splitlines()]
    assert base64.b64decode(dead["data"]) == b"record-1" and dead["attempts"] == 3 and dead["shardId"]

    # A restarted poller continues after its checkpoint: nothing is replayed, new records are delivered.
    restarted_handler = RecordingHandler()
    restarted = EventSourcePoller(stream, restarted_handler, batch_size=10, checkpoint_path=checkpoint, max_retries=2)
    assert restarted.run_once() == 0 and restarted_handler.batches == []
    boto3.client("kinesis").put_record(StreamName=stream, Data=b"record-5", PartitionKey="cam1")
    assert restarted.run_once() == 1 and restarted_handler.batches == [["record-5"]]


def test_a_raising_handler_fails_the_whole_batch_which_is_split_in_two(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(2)
    calls: list[int] = []

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        raise RuntimeError("boom")

    poller = EventSourcePoller(stream, broken, batch_size=10, checkpoint_path=tmp_path / "cp.json", max_retries=1,
                               retry_delay_s=0.0)
    assert poller.run_once() == 0 and poller.dead_lettered == 2
    assert calls == [2, 1, 1, 1, 1]  # BisectBatchOnFunctionError: halves, each tried and retried once

    unsplit_calls: list[int] = []
    stream = new_stream(2)
    poller = EventSourcePoller(stream, lambda event, context: unsplit_calls.append(len(event["Records"])) or 1 / 0,
                               batch_size=10, checkpoint_path=tmp_path / "cp2.json", max_retries=1, retry_delay_s=0.0,
                               bisect_on_error=False)
    assert poller.run_once() == 0 and unsplit_calls == [2, 2, 1, 1]


def test_an_empty_item_identifier_fails_the_whole_batch(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(3)
    batches: list[int] = []

    def vague(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batches.append(len(event["Records"]))
        return {"batchItemFailures": [{"itemIdentifier": ""}]} if len(batches) == 1 else {"batchItemFailures": []}

    poller = EventSourcePoller(stream, vague, batch_size=10, checkpoint_path=tmp_path / "cp.json", max_retries=2,
                               retry_delay_s=0.0)
    assert poller.run_once() == 3 and batches == [3, 3]


def test_the_on_failure_queue_gets_the_batch_metadata_as_aws_sends_it(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = new_stream(1)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"on-failure-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    poller = EventSourcePoller(stream, RecordingHandler({"record-0": 100}), batch_size=10,
                               checkpoint_path=tmp_path / "cp.json", max_retries=1, retry_delay_s=0.0,
                               dead_letter_queue_url=queue)
    assert poller.run_once() == 0 and poller.dead_lettered == 1
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 2
    info = body["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000" and info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] and info["streamArn"].endswith(stream)
    assert "data" not in json.dumps(body)  # as on AWS: the payload stays in the stream (and the local file)


@pytest.fixture()
def model_server() -> Iterator[LocalModelServer]:
    server = start_in_thread(0)
    try:
        yield server
    finally:
        server.stop()


def test_local_cloud_runs_the_unchanged_handler(
    aws_env: dict[str, str], model_server: LocalModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs = deploy_stack("hc-poller-test", {"WatchLabels": "Person", "MinConfidence": 50}, "us-east-1",
                           with_dependencies=False, waiter_delay_s=1, say=lambda _: None)
    for variable, output in (("FRAMES_BUCKET", "FramesBucketName"), ("FRAMES_TABLE", "FramesTableName"),
                             ("ALERT_TOPIC_ARN", "AlertTopicArn"), ("RESULTS_QUEUE_URL", "ResultsQueueUrl"),
                             ("FAILED_RECORDS_QUEUE_URL", "FailedRecordsQueueUrl")):
        monkeypatch.setenv(variable, outputs[output])
    monkeypatch.setenv("MIN_CONFIDENCE", "50")
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", model_server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", model_server.url)
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    checkpoint = tmp_path / "cp.json"

    def results() -> list[CloudResult]:
        messages = sqs.receive_message(QueueUrl=outputs["ResultsQueueUrl"], MaxNumberOfMessages=10).get("Messages", [])
        return [decode_text(m["Body"]) for m in messages]  # type: ignore[misc]

    # Rekognition backend, with the model server throttling twice: the handler backs off and succeeds.
    monkeypatch.setenv("DETECTOR_BACKEND", "rekognition")
    kinesis.put_record(StreamName=outputs["StreamName"], Data=make_frame(seq=1).encode(), PartitionKey="cam1")
    model_server.throttle(2)
    poller = EventSourcePoller(outputs["StreamName"], load_handler(), 10, checkpoint, max_retries=1, retry_delay_s=0.0)
    assert poller.run_once() == 1 and poller.dead_lettered == 0
    [result] = results()
    assert result.backend == "rekognition" and result.model.startswith("rekognition-")
    person = max((d for d in result.detections if d.label == "Person"), key=lambda d: d.score)
    x1, y1, x2, y2 = person.box
    assert 130 < x1 < x2 < 300 and y1 < 150 and y2 > 330
    assert result.alerts == ["Person"]

    # SageMaker backend through the same stack, after a cold start that reads the new configuration.
    monkeypatch.setenv("DETECTOR_BACKEND", "sagemaker")
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", "hybridcam-detector")
    kinesis.put_record(StreamName=outputs["StreamName"], Data=make_frame(seq=2).encode(), PartitionKey="cam1")
    poller = EventSourcePoller(outputs["StreamName"], load_handler(), 10, checkpoint, max_retries=1, retry_delay_s=0.0)
    assert poller.run_once() == 1
    [result] = results()
    assert result.backend == "sagemaker" and result.seq == 2 and "Person" in [d.label for d in result.detections]
    assert result.alerts == []  # the cooldown for cam1/Person still holds
    stored = boto3.client("s3").list_objects_v2(Bucket=outputs["FramesBucketName"])["Contents"]
    assert sorted(o["Key"] for o in stored) == sorted(r for r in (
        f"frames/cam1/2026/01/01/00/{make_frame(seq=1).frame_id}.jpg", f"frames/cam1/2026/01/01/00/{make_frame(seq=2).frame_id}.jpg"))
