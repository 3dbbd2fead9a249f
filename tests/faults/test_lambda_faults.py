"""Fault scenarios 7 and 8: the detector Lambda under poison records and under a kill between a side effect and its mark.

Real parts: the stack's template deployed into the moto server, the local event source (the poller that
follows AWS's event source mapping rules), the unchanged function (``detector_lambda``) and the local
model server (a real ONNX detector behind the Rekognition API); scenario 8 also runs the real results
bridge process against a real redis-server, so "at the edge" means the edge's detection stream.

A kill is simulated where it would hurt most: a botocore ``after-call`` hook on the function's own client
raises a BaseException right after AWS accepted the call (SNS Publish, SQS SendMessage) and before the
function could record it. Nothing in the function or the poller catches a BaseException, so the
invocation ends there, the shard's checkpoint is not moved, and a new poller with a freshly started
function takes over, as a new container would.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import msgpack
import pytest

from cloud.deploy import deploy_stack
from cloud.local.event_source_poller import EventSourcePoller
from cloud.local.model_server import LocalModelServer, start_in_thread
from detector_lambda.dead_letters import payload_of
from detector_lambda.handler import DetectorFunction, cold_start
from shared.schemas import CloudResult, DetectionSet, decode_text
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.faults.report import FaultResult, record_fault
from tests.fixtures.cloud import make_frame
from tests.fixtures.cloud_edge import write_cloud_site
from tests.fixtures.pipeline import ServiceRunner, wait_until

DETECTOR_ATTEMPTS = 4  # detector_lambda.detectors.Backoff.attempts: throttle that often and one record fails once


class FunctionKilled(BaseException):
    """The function's process ends here (not an Exception: nothing may handle it)."""


@pytest.fixture()
def model_server() -> Iterator[LocalModelServer]:
    server = start_in_thread(0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def stack(aws_env: dict[str, str], model_server: LocalModelServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The real template in moto, and this process's environment set as the function's (the poller runs it here)."""
    outputs = deploy_stack(f"hc-faults-{uuid.uuid4().hex[:6]}", {"WatchLabels": "Person", "MinConfidence": 50},
                           "us-east-1", with_dependencies=False, waiter_delay_s=1, say=lambda _: None)
    for variable, output in (("FRAMES_BUCKET", "FramesBucketName"), ("FRAMES_TABLE", "FramesTableName"),
                             ("ALERT_TOPIC_ARN", "AlertTopicArn"), ("RESULTS_QUEUE_URL", "ResultsQueueUrl"),
                             ("FAILED_RECORDS_QUEUE_URL", "FailedRecordsQueueUrl")):
        monkeypatch.setenv(variable, outputs[output])
    for variable, value in {"DETECTOR_BACKEND": "rekognition", "WATCH_LABELS": "Person", "MIN_CONFIDENCE": "50",
                            "ALERT_COOLDOWN_S": "300", "AWS_ENDPOINT_URL_REKOGNITION": model_server.url}.items():
        monkeypatch.setenv(variable, value)
    return outputs


def put_records(stream: str, payloads: list[tuple[str, bytes]]) -> None:
    kinesis = boto3.client("kinesis")
    for partition_key, payload in payloads:  # one by one: the shard keeps this order
        kinesis.put_record(StreamName=stream, Data=payload, PartitionKey=partition_key)


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs, messages = boto3.client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"]).get("Messages", []):
        for message in batch:
            messages.append(message)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def alert_copy_queue(topic_arn: str) -> str:
    """moto skips AWS::SNS::Subscription: a queue subscribed here receives what email/SMS would."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"alert-copy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def alerts_by_camera(queue_url: str) -> Counter[tuple[str, str]]:
    bodies = [json.loads(m["Body"]) for m in drain(queue_url)]
    return Counter((b["MessageAttributes"]["camera_id"]["Value"], b["MessageAttributes"]["label"]["Value"]) for b in bodies)


def count_successful_calls(client: Any, operation: str) -> list[str]:
    calls: list[str] = []

    def seen(http_response: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            calls.append(operation)

    client.meta.events.register(f"after-call.*.{operation}", seen)
    return calls


def kill_after(client: Any, operation: str, times: int = 1) -> None:
    """Make the function die right after AWS accepted its next ``times`` calls of ``operation``."""
    left = [times]

    def die(**_: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise FunctionKilled(f"killed after {operation}")

    client.meta.events.register(f"after-call.*.{operation}", die)


def new_poller(stream: str, function: DetectorFunction, checkpoint: Path) -> EventSourcePoller:
    return EventSourcePoller(stream, function, batch_size=10, checkpoint_path=checkpoint, max_retries=3,
                             retry_delay_s=0.0)


def poison_payloads(bucket: str) -> dict[str, bytes]:
    good = msgpack.unpackb(make_frame(camera_id="wide", seq=999).encode())
    return {
        "garbage bytes": b"\xc1 not msgpack at all",
        "unknown schema version": msgpack.packb({**good, "v": 99}),
        "PNG, not JPEG": msgpack.packb({**good, "jpeg": b"\x89PNG\r\n\x1a\n rest of a png"}),
        "claim check to nowhere": msgpack.packb({**good, "jpeg": None, "s3_bucket": bucket,
                                                 "s3_key": "claim-check/wide/missing.jpg"}),
    }


def test_scenario_7_a_batch_of_good_and_poison_records(stack: dict[str, str], model_server: LocalModelServer,
                                                       tmp_path: Path) -> None:
    good = [make_frame(camera_id="wide", seq=seq, capture_ts=1767225600.0 + seq) for seq in range(5)]
    poison = poison_payloads(stack["FramesBucketName"])
    interleaved: list[tuple[str, bytes]] = []
    for index, frame in enumerate(good):
        interleaved.append(("wide", frame.encode()))
        if index < len(poison):
            interleaved.append(("wide", list(poison.values())[index]))
    put_records(stack["StreamName"], interleaved)

    function = cold_start()
    detector_calls = count_successful_calls(function.pipeline.detector.client, "DetectLabels")  # type: ignore[attr-defined]
    model_server.throttle(DETECTOR_ATTEMPTS)  # the first good record fails once: the batch is retried from it
    poller = new_poller(stack["StreamName"], function, tmp_path / "checkpoints.json")
    started = time.monotonic()
    finished = poller.run_once()
    took_s = time.monotonic() - started

    results = [decode_text(m["Body"]) for m in drain(stack["ResultsQueueUrl"])]
    result_ids = Counter(r.frame_id for r in results if isinstance(r, CloudResult))
    items = [i for i in boto3.client("dynamodb").scan(TableName=stack["FramesTableName"])["Items"]
             if i["pk"]["S"].startswith("frame#")]
    item_ids = Counter(i["frame_id"]["S"] for i in items)
    letters = [json.loads(m["Body"]) for m in drain(stack["FailedRecordsQueueUrl"])]
    recovered = [payload_of(letter, boto3.client("s3")) for letter in letters]
    expected_ids = {f.frame_id for f in good}

    record_fault(FaultResult(
        scenario="7 Lambda good + poison batch",
        injected=f"{len(good)} good and {len(poison)} poison records in one batch; {DETECTOR_ATTEMPTS} throttled detector calls",
        recovery_s=round(took_s, 1), expected=len(good), seen=len(set(result_ids) & expected_ids),
        lost=len(expected_ids - set(result_ids)),
        duplicated=sum(n - 1 for n in result_ids.values()) + sum(n - 1 for n in item_ids.values()),
        notes=(f"detector calls {len(detector_calls)} for {len(good)} good records; {len(letters)} of {len(poison)} "
               f"poison payloads recovered from the dead-letter queue; {poller.invocations} invocations"),
    ))
    assert finished == len(interleaved) and poller.dead_lettered == 0  # nothing left for the event source to give up
    assert set(result_ids) == expected_ids and all(n == 1 for n in result_ids.values())  # one result per good record
    assert set(item_ids) == expected_ids and all(n == 1 for n in item_ids.values())  # one item per good record
    assert len(detector_calls) == len(good)  # the retry of the batch did not detect any frame again
    assert sorted(recovered) == sorted(poison.values())  # each poison payload, once, recoverable
    assert {letter["reason"] for letter in letters} and all(letter["shardId"] for letter in letters)


def cloud_detection_sets(bus: StreamBus) -> list[DetectionSet]:
    return [e.message for e in bus.read_all(DETECTIONS_STREAM)
            if isinstance(e.message, DetectionSet) and e.message.source == "cloud"]


def run_until_killed(poller: EventSourcePoller) -> str:
    try:
        poller.run_once()
    except FunctionKilled as kill:
        return str(kill)
    return "not killed"


def queue_empty(queue_url: str) -> Callable[[], bool]:
    def empty() -> bool:
        attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values()) == 0
    return empty


def test_scenario_8_function_killed_between_a_side_effect_and_its_mark(
    stack: dict[str, str], redis_server: Any, tmp_path: Path
) -> None:
    cameras = ("wide", "gate")
    frames = [make_frame(camera_id=camera, seq=seq, capture_ts=1767225600.0 + seq) for seq in range(3) for camera in cameras]
    put_records(stack["StreamName"], [(f.camera_id, f.encode()) for f in frames])  # wide-0, gate-0, wide-1, ...
    alert_copy = alert_copy_queue(stack["AlertTopicArn"])
    checkpoint = tmp_path / "checkpoints.json"

    # Kill 1: after SNS accepted wide's alert, before the function marked it.
    first = cold_start()
    kill_after(first.pipeline.alerter.sns, "Publish")
    kills = [run_until_killed(new_poller(stack["StreamName"], first, checkpoint))]
    # Kill 2, in the next container: after SQS accepted gate's result, before the function marked it.
    second = cold_start()
    kill_after(second.pipeline.sqs, "SendMessage")
    kills.append(run_until_killed(new_poller(stack["StreamName"], second, checkpoint)))
    assert kills == ["killed after Publish", "killed after SendMessage"]

    # A third container finishes the shard; the real results bridge brings the results to the edge.
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_BRIDGE_QUEUE_URL": stack["ResultsQueueUrl"],
           "HYBRIDCAM_BRIDGE_REGION": "us-east-1", "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "1",
           "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml")), "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    try:
        runner.start("results-bridge")
        started = time.monotonic()
        third = new_poller(stack["StreamName"], cold_start(), checkpoint)
        third.run_once()
        expected = {f.frame_id for f in frames}
        assert wait_until(lambda: {d.frame_id for d in cloud_detection_sets(bus)} >= expected, 60), runner.logs()
        recovery_s = time.monotonic() - started
        assert wait_until(queue_empty(stack["ResultsQueueUrl"]), 30), runner.logs()  # the duplicate result was taken too
        seen = Counter(d.frame_id for d in cloud_detection_sets(bus))
    finally:
        runner.stop_all()
    alerts = alerts_by_camera(alert_copy)

    record_fault(FaultResult(
        scenario="8 Lambda killed before its marks",
        injected="function killed after the SNS alert and before its mark, then after the result and before its mark",
        recovery_s=round(recovery_s, 1), expected=len(expected), seen=len(set(seen) & expected),
        lost=len(expected - set(seen)), duplicated=sum(n - 1 for n in seen.values()), restarts=2,
        notes=f"alerts per camera/label {dict(sorted((f'{c}/{label}', n) for (c, label), n in alerts.items()))}; "
              f"bound 1 per cooldown",
    ))
    assert set(seen) == expected and all(n == 1 for n in seen.values())  # exactly one cloud detection set per frame
    assert alerts == Counter({("wide", "Person"): 1, ("gate", "Person"): 1})  # at most one per camera/label/cooldown
    assert third.dead_lettered == 0
