"""The detector Lambda against the moto server, with Rekognition stubbed by botocore's Stubber.

The function runs as Lambda runs it (Powertools BatchProcessor over a Kinesis event); its log is read
back as the JSON lines Powertools writes."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from types import ModuleType
from typing import Any

import boto3
import msgpack
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber

from cloud.local.event_source_poller import LocalContext
from detector_lambda.dead_letters import payload_of
from shared.errors import ConfigError
from shared.schemas import CloudResult, decode_text
from tests.fixtures.cloud import CLOUD_TEST_DATA, CloudResources, FunctionLog, event_of, make_frame, person_jpeg

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
    """The function with its Rekognition client stubbed and its other clients talking to moto."""

    def __init__(self, modules: dict[str, ModuleType], resources: CloudResources, **env: str) -> None:
        self.settings = modules["settings"].load_settings(resources.lambda_env(**env))
        self.rekognition = boto3.client("rekognition")
        self.stubber = Stubber(self.rekognition)
        self.sleeps: list[float] = []
        detectors = modules["detectors"]
        backoff = detectors.Backoff(attempts=3, base_s=0.01, sleep=self.sleeps.append)
        detector = detectors.RekognitionDetector(self.rekognition, self.settings.max_labels,
                                                 self.settings.min_confidence, backoff)
        self.pipeline = modules["pipeline"].build_pipeline(self.settings, detector)
        self.function = modules["handler"].DetectorFunction(self.settings, self.pipeline)
        self.resources = resources

    def expect_detect(self, image: dict[str, Any] | None = None, answer: dict[str, Any] | None = None) -> None:
        params = {"Image": image or {"Bytes": person_jpeg()}, "MaxLabels": 10, "MinConfidence": 50.0}
        self.stubber.add_response("detect_labels", answer or rekognition_answer(), params)

    def handle(self, event: dict[str, Any], context: Any = None) -> list[str]:
        with self.stubber:
            response = self.function.handle(event, context)
        return [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]

    def results(self) -> list[CloudResult]:
        return [decode_text(body) for body in self.resources.drain(self.resources.results_queue_url)]  # type: ignore[misc]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.resources.drain(self.resources.dead_letter_queue_url)]


@pytest.fixture()
def harness(lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources) -> Harness:
    return Harness(lambda_modules, cloud_resources)


def test_frame_is_stored_labelled_alerted_and_returned(harness: Harness) -> None:
    frame = make_frame()
    harness.expect_detect()
    assert harness.handle(event_of(frame.encode())) == []

    key = "frames/cam1/2026/01/01/00/" + frame.frame_id + ".jpg"
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


def test_lasting_throttling_fails_only_that_record(harness: Harness, function_log: FunctionLog) -> None:
    for _ in range(3):
        harness.stubber.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400)
    harness.expect_detect()
    first, second = make_frame(seq=1), make_frame(seq=2)
    event = event_of(first.encode(), second.encode())
    failed = harness.handle(event)
    assert failed == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    assert [r.seq for r in harness.results()] == [2]
    [error] = [line for line in function_log.lines() if line["level"] == "ERROR"]
    assert error["sequence_number"] == event["Records"][0]["kinesis"]["sequenceNumber"]
    assert error["frame_id"] == first.frame_id and error["camera"] == "cam1"
    assert error["exception_name"] == "ThrottlingException" and "Traceback" in error["exception"]
    assert "ThrottlingException" in error["exception"] and "Rate exceeded" in error["exception"]


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


def test_bad_records_go_with_their_payload_to_the_dead_letter_queue_and_are_acknowledged(
    harness: Harness, function_log: FunctionLog
) -> None:
    bad = bad_payloads()
    harness.expect_detect()
    event = event_of(*bad.values(), make_frame().encode())
    event["Records"].append({**event["Records"][0], "eventID": "shardId-000000000000:999",
                             "kinesis": {"sequenceNumber": "999", "data": "%%% not base64"}})
    assert harness.handle(event) == []  # acknowledged: nothing blocks the shard
    assert len(harness.results()) == 1 and len(harness.resources.frame_items()) == 1

    letters = {letter["sequenceNumber"]: letter for letter in harness.dead_letters()}
    sequence_numbers = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    assert sorted(letters) == sorted(sequence_numbers[:5] + ["999"])
    for sequence_number, payload in zip(sequence_numbers, bad.values(), strict=False):
        assert payload_of(letters[sequence_number]) == payload  # the payload can be recovered and replayed
        assert letters[sequence_number]["shardId"] == "shardId-000000000000"
    assert letters["999"]["data"] == "%%% not base64"
    reasons = " ".join(letter["reason"] for letter in letters.values())
    for reason in ("not a msgpack message", "unknown schema 'cloud_frame' version 99", "does not hold JPEG",
                   "camera_id: Field required", "neither jpeg bytes nor", "not base64"):
        assert reason in reasons, reason
    errors = [line for line in function_log.lines() if line["level"] == "ERROR"]
    assert len(errors) == 6 and all("failed permanently" in line["message"] for line in errors)
    assert sorted(line["sequence_number"] for line in errors) == sorted(letters)


def test_a_redelivered_bad_record_is_dead_lettered_once(harness: Harness) -> None:
    event = event_of(b"not a frame")
    assert harness.handle(event) == [] and harness.handle(event) == []
    assert len(harness.dead_letters()) == 1


def test_without_a_dead_letter_queue_bad_records_are_reported(
    lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources
) -> None:
    harness = Harness(lambda_modules, cloud_resources, FAILED_RECORDS_QUEUE_URL="")
    harness.expect_detect()
    event = event_of(b"not a frame", make_frame().encode())
    assert harness.handle(event) == [event["Records"][0]["kinesis"]["sequenceNumber"]]


def test_a_dead_letter_too_large_for_sqs_keeps_its_payload_in_s3(harness: Harness) -> None:
    big = b"\x92" + bytes(400_000)  # not a frame, and its base64 is over SQS's 256 KiB
    assert harness.handle(event_of(big)) == []
    [letter] = harness.dead_letters()
    assert "data" not in letter and letter["s3Key"].startswith("dead-letters/")
    assert payload_of(letter, boto3.client("s3")) == big


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
    with pytest.raises(BatchProcessingError):  # the only record failed: the invocation fails
        harness.handle(event)
    harness.pipeline.sqs = sqs
    assert harness.handle(event) == []
    [result] = harness.results()
    assert result.alerts == ["Person"]
    assert len(harness.resources.alert_texts()) == 1 and len(harness.resources.frame_items()) == 1


def test_a_retry_of_a_stored_frame_neither_detects_nor_stores_it_again(harness: Harness) -> None:
    event = event_of(make_frame().encode())
    puts = count_calls(harness.pipeline.store.s3, "PutObject")
    harness.expect_detect()  # one detection only: a second call would find no stubbed answer
    assert harness.handle(event) == []
    assert harness.handle(event) == []  # redelivered (the event source retries from an earlier record)
    harness.stubber.assert_no_pending_responses()
    assert len(puts) == 1
    assert len(harness.results()) == 1 and len(harness.resources.alert_texts()) == 1


def count_calls(client: Any, operation: str) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(f"before-call.*.{operation}", lambda **_: calls.append(operation))
    return calls


def test_an_sns_failure_neither_holds_back_the_result_nor_silences_the_camera(harness: Harness) -> None:
    frame = make_frame()
    event = event_of(frame.encode())
    harness.expect_detect()
    topic = harness.pipeline.alerter.topic_arn
    harness.pipeline.alerter.topic_arn = topic + "-gone"  # SNS answers NotFound
    with pytest.raises(BatchProcessingError):
        harness.handle(event)
    [result] = harness.results()  # the result went to the edge despite SNS
    assert result.frame_id == frame.frame_id and result.alerts == ["Person"]
    cooldown = boto3.client("dynamodb").get_item(TableName=harness.resources.table,
                                                 Key={"pk": {"S": "cooldown#test-site#cam1#person"}})
    assert "Item" not in cooldown  # the claim was released: the camera's next alert is not suppressed
    assert harness.resources.alert_texts() == []

    harness.pipeline.alerter.topic_arn = topic  # SNS is back: the retry alerts once, the result is not resent
    assert harness.handle(event) == []
    assert len(harness.resources.alert_texts()) == 1 and harness.results() == []


class ShrinkingContext:
    """A Lambda context whose remaining time drops by ``step_ms`` at each look."""

    def __init__(self, remaining_ms: int, step_ms: int) -> None:
        self.remaining_ms, self.step_ms = remaining_ms, step_ms

    def get_remaining_time_in_millis(self) -> int:
        self.remaining_ms -= self.step_ms
        return self.remaining_ms


def test_records_are_not_started_when_the_invocation_runs_low_on_time(harness: Harness) -> None:
    frames = [make_frame(seq=seq) for seq in (1, 2, 3)]
    event = event_of(*(f.encode() for f in frames))
    harness.expect_detect()  # only the first record is started
    context = ShrinkingContext(remaining_ms=45_000, step_ms=15_000)  # 30 s at the first record, 15 s at the second
    failed = harness.handle(event, context)
    assert failed == [r["kinesis"]["sequenceNumber"] for r in event["Records"][1:]]
    assert [r.seq for r in harness.results()] == [1]
    harness.stubber.assert_no_pending_responses()


def test_a_batch_where_every_record_failed_raises(harness: Harness) -> None:
    for _ in range(6):
        harness.stubber.add_client_error("detect_labels", "ServiceUnavailableException", "down", 503)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        harness.handle(event_of(make_frame(seq=1).encode(), make_frame(seq=2).encode()))
    assert harness.results() == [] and harness.resources.frame_items() == []


def test_the_deployed_entry_point_logs_with_the_lambda_context(
    lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources, function_log: FunctionLog,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud_resources.lambda_env().items():
        monkeypatch.setenv(name, value)
    function = lambda_modules["handler"].cold_start()
    context = LocalContext(aws_request_id="req-1", started=time.monotonic())
    assert function(event_of(b"poison"), context) == {"batchItemFailures": []}
    [error] = [line for line in function_log.lines() if line["level"] == "ERROR"]
    assert error["function_request_id"] == "req-1" and error["function_name"] == context.function_name
    assert "failed permanently" in error["message"] and error["sequence_number"].startswith("4959")


def test_cooldown_suppresses_a_second_alert_of_the_same_camera_and_label(harness: Harness) -> None:
    """... of the same site: another site's camera of the same name has its own cooldown."""
    frames = [make_frame(seq=1), make_frame(seq=2, capture_ts=1767225610.0), make_frame(camera_id="cam2", seq=1),
              make_frame(seq=3, capture_ts=1767225611.0, site="other-site")]
    for _ in frames:
        harness.expect_detect()
    assert harness.handle(event_of(*(f.encode() for f in frames))) == []
    alerts = {(r.camera_id, r.seq): r.alerts for r in harness.results()}
    assert alerts == {("cam1", 1): ["Person"], ("cam1", 2): [], ("cam2", 1): ["Person"], ("cam1", 3): ["Person"]}
    assert len(harness.resources.alert_texts()) == 3


def test_cooldown_expires(lambda_modules: dict[str, ModuleType], cloud_resources: CloudResources) -> None:
    harness = Harness(lambda_modules, cloud_resources, ALERT_COOLDOWN_S="0")
    for _ in range(2):
        harness.expect_detect()
    assert harness.handle(event_of(make_frame(seq=1).encode(), make_frame(seq=2).encode())) == []
    assert len(harness.resources.alert_texts()) == 2


def test_missing_configuration_is_one_clear_sentence(lambda_modules: dict[str, ModuleType]) -> None:
    load_settings = lambda_modules["settings"].load_settings
    with pytest.raises(ConfigError, match="environment variable FRAMES_TABLE is not set"):
        load_settings({"FRAMES_BUCKET": "b"})
    required = {"FRAMES_BUCKET": "b", "FRAMES_TABLE": "t", "ALERT_TOPIC_ARN": "a", "RESULTS_QUEUE_URL": "q"}
    with pytest.raises(ConfigError, match="MIN_CONFIDENCE Input should be less than or equal to 100"):
        load_settings({**required, "MIN_CONFIDENCE": "120"})
    with pytest.raises(ConfigError, match="SAGEMAKER_ENDPOINT is not set but DETECTOR_BACKEND is sagemaker"):
        load_settings({**required, "DETECTOR_BACKEND": "SageMaker"})
    settings = load_settings({**required, "WATCH_LABELS": " Person, dog ,", "MIN_CONFIDENCE": "70"})
    assert settings.watch_labels == frozenset({"person", "dog"}) and settings.alert_confidence == 70.0


def test_settings_come_from_the_environment(lambda_modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"FRAMES_BUCKET": "b", "FRAMES_TABLE": "t", "ALERT_TOPIC_ARN": "a", "RESULTS_QUEUE_URL": "q",
                        "WATCH_LABELS": "Person,Car", "RECORD_RESERVE_S": "12"}.items():
        monkeypatch.setenv(name, value)
    settings = lambda_modules["settings"].load_settings()
    assert settings.watch_labels == frozenset({"person", "car"}) and settings.record_reserve_s == 12.0


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


def test_sam_event_as_generated_is_a_dead_lettered_bad_record(harness: Harness) -> None:
    event = sam_event(committed_frame_text())  # data is base64 text, not msgpack: a malformed record
    assert harness.handle(event) == []
    [letter] = harness.dead_letters()
    assert "not a msgpack message" in letter["reason"]
    assert letter["sequenceNumber"] == event["Records"][0]["kinesis"]["sequenceNumber"]
