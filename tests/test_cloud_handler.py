"""The detector Lambda against the moto server, with Rekognition stubbed by botocore's Stubber."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
from types import ModuleType
from typing import Any

import boto3
import msgpack
import pytest
from botocore.stub import Stubber

from shared.errors import ConfigError
from shared.schemas import CloudResult, decode_text
from tests.fixtures.cloud import CLOUD_TEST_DATA, CloudResources, event_of, make_frame, person_jpeg

PERSON_BOX = {"Width": 0.125, "Height": 0.65, "Left": 0.3, "Top": 0.25}
PERSON_PIXELS = (0.3 * 640, 0.25 * 424, 0.425 * 640, 0.9 * 424)


def rekognition_answer() -> dict[str, Any]:
    """A DetectLabels response in the real shape (LabelModelVersion 3.0)."""
    return {
        "Labels": [
            {"Name": "Person", "Confidence": 98.1, "Instances": [{"BoundingBox": PERSON_BOX, "Confidence": 97.5}],
             "Parents": [], "Aliases": [{"Name": "Human"}], "Categories": [{"Name": "Person Description"}]},
            {"Name": "Outdoors", "Confidence": 88.0, "Instances": [], "Parents": [], "Categories": [{"Name": "Nature"}]},
        ],
        "LabelModelVersion": "3.0",
    }


class Harness:
    """A pipeline whose Rekognition client is stubbed and whose other clients talk to moto."""

    def __init__(self, modules: dict[str, ModuleType], resources: CloudResources, **env: str) -> None:
        config = modules["config"].load_config(resources.lambda_env(**env))
        self.rekognition = boto3.client("rekognition")
        self.stubber = Stubber(self.rekognition)
        self.sleeps: list[float] = []
        detectors = modules["detectors"]
        backoff = detectors.Backoff(attempts=3, base_s=0.01, sleep=self.sleeps.append)
        detector = detectors.RekognitionDetector(self.rekognition, config.max_labels, config.min_confidence, backoff)
        self.pipeline = modules["handler"].build_pipeline(config, detector)
        self.resources = resources

    def expect_detect(self, image: dict[str, Any] | None = None, answer: dict[str, Any] | None = None) -> None:
        params = {"Image": image or {"Bytes": person_jpeg()}, "MaxLabels": 10, "MinConfidence": 50.0}
        self.stubber.add_response("detect_labels", answer or rekognition_answer(), params)

    def handle(self, event: dict[str, Any]) -> list[str]:
        with self.stubber:
            response = self.pipeline.handle(event)
        return [item["itemIdentifier"] for item in response["batchItemFailures"]]

    def results(self) -> list[CloudResult]:
        return [decode_text(body) for body in self.resources.drain(self.resources.results_queue_url)]  # type: ignore[misc]


@pytest.fixture()
def harness(lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources) -> Harness:
    return Harness(lambda_modules, cloud_resources)


def test_frame_is_stored_labelled_alerted_and_returned(harness: Harness) -> None:
    frame = make_frame()
    harness.expect_detect()
    assert harness.handle(event_of(frame.encode())) == []

    key = "cam1/2026/01/01/00/" + frame.frame_id + ".jpg"
    stored = boto3.client("s3").get_object(Bucket=harness.resources.bucket, Key=key)
    assert stored["Body"].read() == person_jpeg()

    [item] = harness.resources.frame_items()
    assert item["frame_id"]["S"] == frame.frame_id and item["camera_id"]["S"] == "cam1"
    assert item["capture_time"]["S"] == "2026-01-01T00:00:00.250Z" and item["s3_key"]["S"] == key
    assert float(item["capture_ts"]["N"]) == frame.capture_ts and "processed_ts" in item and "expires_at" in item
    labels = {label["M"]["name"]["S"]: label["M"] for label in item["labels"]["L"]}
    assert [float(v["N"]) for v in labels["Person"]["box"]["L"]] == pytest.approx(PERSON_PIXELS)
    assert "box" not in labels["Outdoors"]  # a frame-level label is kept without a box

    [result] = harness.results()
    assert isinstance(result, CloudResult) and result.frame_id == frame.frame_id
    assert result.backend == "rekognition" and result.model == "rekognition-3.0" and result.s3_key == key
    [person] = result.detections
    assert person.label == "Person" and person.score == pytest.approx(0.975)
    assert person.box == pytest.approx(PERSON_PIXELS)
    assert result.alerts == ["Person"]
    [alert] = harness.resources.alert_texts()
    assert "Person (98%) on cam1 at 2026-01-01T00:00:00.250Z" in alert and key in alert


def test_latest_frames_of_a_camera_come_from_the_gsi(harness: Harness) -> None:
    for _ in (1, 2, 3):
        harness.expect_detect()
    harness.handle(event_of(*(make_frame(seq=seq, capture_ts=1767225600.0 + seq).encode() for seq in (1, 2, 3))))
    answer = boto3.client("dynamodb").query(
        TableName=harness.resources.table, IndexName="camera-latest", KeyConditionExpression="camera_id = :c",
        ExpressionAttributeValues={":c": {"S": "cam1"}}, ScanIndexForward=False, Limit=2)
    assert [item["seq"]["N"] for item in answer["Items"]] == ["3", "2"]


def test_throttling_is_retried_with_backoff(harness: Harness) -> None:
    harness.stubber.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400)
    harness.stubber.add_client_error("detect_labels", "ProvisionedThroughputExceededException", "slow down", 400)
    harness.expect_detect()
    assert harness.handle(event_of(make_frame().encode())) == []
    assert len(harness.sleeps) == 2 and len(harness.results()) == 1


def test_lasting_throttling_fails_only_that_record(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        harness.stubber.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400)
    harness.expect_detect()
    event = event_of(make_frame(seq=1).encode(), make_frame(seq=2).encode())
    with caplog.at_level(logging.WARNING):
        failed = harness.handle(event)
    assert failed == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    assert [r.seq for r in harness.results()] == [2]
    assert "failed: ThrottlingException" in caplog.text and "Rate exceeded" in caplog.text


def test_large_image_goes_by_claim_check(harness: Harness) -> None:
    big = person_jpeg() + bytes(5 * 1024 * 1024)  # a valid JPEG stream followed by padding, over 5 MB
    s3 = boto3.client("s3")
    s3.put_object(Bucket=harness.resources.bucket, Key="incoming/big.jpg", Body=big)
    frame = make_frame(jpeg=None, s3_bucket=harness.resources.bucket, s3_key="incoming/big.jpg")
    harness.expect_detect(image={"S3Object": {"Bucket": harness.resources.bucket, "Name": "incoming/big.jpg"}})
    assert harness.handle(event_of(frame.encode())) == []
    [result] = harness.results()
    copied = s3.head_object(Bucket=harness.resources.bucket, Key=result.s3_key)
    assert copied["ContentLength"] == len(big) and result.s3_key.endswith(frame.frame_id + ".jpg")


def bad_payloads() -> dict[str, bytes]:
    good = msgpack.unpackb(make_frame().encode())
    missing = {k: v for k, v in good.items() if k != "camera_id"}
    return {
        "not msgpack": b"\xc1\xc1 this is not msgpack",
        "schema version": msgpack.packb({**good, "v": 99}),
        "not jpeg": msgpack.packb({**good, "jpeg": b"\x89PNG\r\n\x1a\n rest"}),
        "missing field": msgpack.packb(missing),
        "no image": msgpack.packb({**good, "jpeg": None}),
    }


def test_bad_records_are_reported_and_logged_while_good_ones_pass(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    bad = bad_payloads()
    harness.expect_detect()
    event = event_of(*bad.values(), make_frame().encode())
    event["Records"].append({"kinesis": {"sequenceNumber": "999", "data": "%%% not base64"}})
    with caplog.at_level(logging.ERROR):
        failed = harness.handle(event)
    sequence_numbers = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert failed == sequence_numbers[:5] + ["999"]
    assert len(harness.results()) == 1 and len(harness.resources.frame_items()) == 1
    for reason in ("not a msgpack message", "unknown schema 'cloud_frame' version 99", "does not hold JPEG",
                   "camera_id: Field required", "neither jpeg bytes nor", "not base64"):
        assert reason in caplog.text, reason
    assert "failed permanently" in caplog.text


def test_a_retried_record_has_one_item_one_alert_one_result(harness: Harness) -> None:
    event = event_of(make_frame().encode())
    harness.expect_detect()
    harness.expect_detect()
    assert harness.handle(event) == []
    assert harness.handle(event) == []
    assert len(harness.resources.frame_items()) == 1
    assert len(harness.results()) == 1
    assert len(harness.resources.alert_texts()) == 1


def test_retry_after_a_lost_result_sends_it_once(harness: Harness) -> None:
    event = event_of(make_frame().encode())
    harness.expect_detect()
    sqs = harness.pipeline.sqs
    harness.pipeline.sqs = None  # the result step crashes on the first attempt
    assert len(harness.handle(event)) == 1
    harness.pipeline.sqs = sqs
    harness.expect_detect()
    assert harness.handle(event) == []
    [result] = harness.results()
    assert result.alerts == ["Person"]
    assert len(harness.resources.alert_texts()) == 1 and len(harness.resources.frame_items()) == 1


def test_cooldown_suppresses_a_second_alert_of_the_same_camera_and_label(harness: Harness) -> None:
    frames = [make_frame(seq=1), make_frame(seq=2, capture_ts=1767225610.0), make_frame(camera_id="cam2", seq=1)]
    for _ in frames:
        harness.expect_detect()
    assert harness.handle(event_of(*(f.encode() for f in frames))) == []
    alerts = {(r.camera_id, r.seq): r.alerts for r in harness.results()}
    assert alerts == {("cam1", 1): ["Person"], ("cam1", 2): [], ("cam2", 1): ["Person"]}
    assert len(harness.resources.alert_texts()) == 2


def test_cooldown_expires(lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources) -> None:
    harness = Harness(lambda_modules, cloud_resources, ALERT_COOLDOWN_S="0")
    for _ in range(2):
        harness.expect_detect()
    assert harness.handle(event_of(make_frame(seq=1).encode(), make_frame(seq=2).encode())) == []
    assert len(harness.resources.alert_texts()) == 2


def test_missing_configuration_is_one_clear_sentence(lambda_modules: dict[str, ModuleType]) -> None:
    with pytest.raises(ConfigError, match="environment variable FRAMES_TABLE is not set"):
        lambda_modules["config"].load_config({"FRAMES_BUCKET": "b"})
    with pytest.raises(ConfigError, match="MIN_CONFIDENCE must be between 0 and 100"):
        lambda_modules["config"].load_config({"FRAMES_BUCKET": "b", "FRAMES_TABLE": "t", "ALERT_TOPIC_ARN": "a",
                                              "RESULTS_QUEUE_URL": "q", "MIN_CONFIDENCE": "120"})


SAM_EVENT = CLOUD_TEST_DATA / "sam_kinesis_event.json"


def sam_event(data: str) -> dict[str, Any]:
    """SAM CLI's Kinesis event for --data DATA when SAM is installed, else the committed copy it generated."""
    sam = shutil.which("sam")
    if sam is None:
        event = json.loads(SAM_EVENT.read_text())
        event.pop("_how_made")
        return event  # type: ignore[no-any-return]
    output = subprocess.run([sam, "local", "generate-event", "kinesis", "get-records", "--data", data],
                            capture_output=True, text=True, check=True, timeout=120).stdout
    return json.loads(output)  # type: ignore[no-any-return]


def committed_frame_text() -> str:
    """DATA as given to SAM: the base64 text of a CloudFrame (SAM base64-encodes --data once more)."""
    event = json.loads(SAM_EVENT.read_text())
    return base64.b64decode(event["Records"][0]["kinesis"]["data"]).decode("ascii")


def test_handler_takes_the_event_aws_tooling_generates(harness: Harness) -> None:
    data = committed_frame_text()
    event = sam_event(data)
    [record] = event["Records"]
    assert record["eventSource"] == "aws:kinesis" and record["eventName"] == "aws:kinesis:record"
    assert base64.b64decode(record["kinesis"]["data"]).decode("ascii") == data
    record["kinesis"]["data"] = data  # what Kinesis carries for our binary record: base64 of the msgpack bytes
    frame = msgpack.unpackb(base64.b64decode(data))
    harness.expect_detect(image={"Bytes": frame["jpeg"]})
    assert harness.handle(event) == []
    [result] = harness.results()
    assert result.frame_id == frame["frame_id"] and result.camera_id == "cam-sam" and result.width == 320
    assert result.detections[0].box == pytest.approx((0.3 * 320, 0.25 * 212, 0.425 * 320, 0.9 * 212))


def test_sam_event_as_generated_is_a_reported_bad_record(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    event = sam_event(committed_frame_text())  # data is base64 text, not msgpack: a malformed record
    with caplog.at_level(logging.ERROR):
        assert harness.handle(event) == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    assert "not a msgpack message" in caplog.text
