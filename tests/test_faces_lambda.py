"""The Lambda's face watch-list step on its own: moto for DynamoDB/SNS/SQS, Rekognition answers stubbed.

Stubbed here because these tests pin down what the step does with given answers (the neighbour
face in a crop, a retried record, a configuration mistake); the end-to-end test runs the real models.
"""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber
from PIL import Image

from shared.errors import ConfigError
from shared.schemas import FaceMatches, decode_text
from tests.fixtures.cloud import CloudResources, FunctionLog, event_of, make_frame

WIDTH, HEIGHT = 640, 424


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def box(x: float, y: float, w: float, h: float) -> dict[str, float]:
    return {"Left": x / WIDTH, "Top": y / HEIGHT, "Width": w / WIDTH, "Height": h / HEIGHT}


@pytest.fixture()
def face_watch_module(lambda_modules: dict[str, Any]) -> Any:
    return lambda_modules["face_watch"]


def make_watch(module: Any, resources: CloudResources, rekognition: Any, **config: Any) -> Any:
    settings = module.FaceWatchConfig(collection_id="people", enabled=True, min_confidence=90.0, **config)
    return module.FaceWatch(settings, rekognition, boto3.client("dynamodb"), resources.face_table, boto3.client("sns"),
                            resources.topic_arn, boto3.client("sqs"), resources.results_queue_url, boto3.client("s3"))


def test_configuration_is_checked_in_one_sentence(face_watch_module: Any, lambda_modules: dict[str, Any]) -> None:
    load_settings = lambda_modules["settings"].load_settings
    required = {"FRAMES_BUCKET": "b", "FRAMES_TABLE": "t", "ALERT_TOPIC_ARN": "a", "RESULTS_QUEUE_URL": "q"}
    config = face_watch_module.FaceWatchConfig.from_settings(load_settings(required))
    assert config.enabled is False
    with pytest.raises(ConfigError, match="FACE_COLLECTION is not set but FACE_SEARCH is enabled"):
        load_settings({**required, "FACE_SEARCH": "enabled"})
    with pytest.raises(ConfigError, match="FACE_SEARCH Input should be 'enabled' or 'disabled'"):
        load_settings({**required, "FACE_SEARCH": "yes"})
    with pytest.raises(ConfigError, match="FACE_MATCH_THRESHOLD Input should be less than or equal to 100"):
        load_settings({**required, "FACE_SEARCH": "enabled", "FACE_COLLECTION": "c", "FACE_MATCHES_TABLE": "m", "FACE_MATCH_THRESHOLD": "120"})
    config = face_watch_module.FaceWatchConfig.from_settings(load_settings(
        {**required, "FACE_SEARCH": " Enabled ", "FACE_COLLECTION": "people", "FACE_MATCHES_TABLE": "m", "FACE_MATCH_THRESHOLD": "85"}))
    assert (config.enabled, config.collection_id, config.match_threshold) == (True, "people", 85.0)


def test_small_or_doubtful_faces_and_a_neighbour_in_the_crop_are_not_matched_and_retries_alert_once(
    face_watch_module: Any, cloud_resources: CloudResources
) -> None:
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(rekognition)
    frame = make_frame(seq=7, face_candidate=True, jpeg=jpeg(), width=WIDTH, height=HEIGHT)
    faces = {"FaceDetails": [
        {"BoundingBox": box(100, 100, 40, 40), "Confidence": 99.0},   # searched, matches
        {"BoundingBox": box(300, 100, 40, 40), "Confidence": 99.0},   # searched, but the crop's largest face is another
        {"BoundingBox": box(500, 100, 10, 10), "Confidence": 99.0},   # under 40 px at 1080p scaled (15.7 px at 424)
        {"BoundingBox": box(500, 300, 40, 40), "Confidence": 80.0},   # under the confidence bar
    ]}

    def searched(face_box_in_crop: dict[str, float], similarity: float) -> dict[str, Any]:
        return {"SearchedFaceBoundingBox": face_box_in_crop, "SearchedFaceConfidence": 99.0, "FaceModelVersion": "7",
                "FaceMatches": [{"Similarity": similarity, "Face": {"FaceId": "f-ada", "ExternalImageId": "Ada_Lovelace"}}]}

    for _ in range(2):  # the first delivery and its retry
        stubber.add_response("detect_faces", faces)
        # crop of 120 px around the first face: the face sits in its middle third
        stubber.add_response("search_faces_by_image", searched({"Left": 1 / 3, "Top": 1 / 3, "Width": 1 / 3, "Height": 1 / 3}, 93.4))
        stubber.add_response("search_faces_by_image", searched({"Left": 0.0, "Top": 0.0, "Width": 0.2, "Height": 0.2}, 99.0))
    with stubber:
        watch = make_watch(face_watch_module, cloud_resources, rekognition)
        sent = watch.process(frame, face_watch_module.FrameImage(WIDTH, HEIGHT, jpeg=frame.jpeg), 1767225601.0)
        again = watch.process(frame, face_watch_module.FrameImage(WIDTH, HEIGHT, jpeg=frame.jpeg), 1767225602.0)
    assert [m.person for m in sent.matches] == ["Ada Lovelace"] and sent.alerts == ["Ada Lovelace"]
    assert sent.matches[0].box == (100.0, 100.0, 140.0, 140.0) and sent.matches[0].crop_jpeg.startswith(b"\xff\xd8\xff")
    assert again.alerts == []  # the cooldown claim holds: a retried record never alerts twice
    assert cloud_resources.alert_texts() == ["Ada Lovelace seen on cam1, similarity 93%"]
    items = [i for i in boto3.client("dynamodb").scan(TableName=cloud_resources.face_table)["Items"] if i["kind"]["S"] == "face_match"]
    assert len(items) == 1 and items[0]["person"]["S"] == "Ada Lovelace" and "expires_at" in items[0]
    # Nothing of the watch-list lands in the frames table, whose camera-latest index the edge identity may query.
    assert not [i for i in boto3.client("dynamodb").scan(TableName=cloud_resources.table)["Items"] if "person" in i]
    results = [decode_text(body) for body in cloud_resources.drain(cloud_resources.results_queue_url)]
    assert [type(r) for r in results] == [FaceMatches, FaceMatches] and results[0].frame_id == frame.frame_id


def test_unmarked_frames_cost_no_face_call(face_watch_module: Any, cloud_resources: CloudResources) -> None:
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    with Stubber(rekognition):  # any call would fail: none is expected
        watch = make_watch(face_watch_module, cloud_resources, rekognition)
        frame = make_frame(seq=8)
        assert watch.process(frame, face_watch_module.FrameImage(WIDTH, HEIGHT, jpeg=frame.jpeg), 1767225601.0) is None


def test_a_missing_collection_is_logged_and_the_record_still_succeeds(
    face_watch_module: Any, cloud_resources: CloudResources, function_log: FunctionLog
) -> None:
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(rekognition)
    stubber.add_response("detect_faces", {"FaceDetails": [{"BoundingBox": box(100, 100, 40, 40), "Confidence": 99.0}]})
    stubber.add_client_error("search_faces_by_image", "ResourceNotFoundException", "The collection id: people does not exist")
    frame = make_frame(seq=9, face_candidate=True, jpeg=jpeg(), width=WIDTH, height=HEIGHT)
    with stubber:
        watch = make_watch(face_watch_module, cloud_resources, rekognition)
        assert watch.process(frame, face_watch_module.FrameImage(WIDTH, HEIGHT, jpeg=frame.jpeg), 1767225601.0) is None
    assert "face collection people does not exist" in function_log.text


def test_the_pipeline_searches_a_retried_claim_checked_frame_from_its_stored_copy(
    lambda_modules: dict[str, Any], cloud_resources: CloudResources
) -> None:
    """The face step is last in Pipeline.process and reads the image itself: a retry skips detection, so it has none."""
    settings = lambda_modules["settings"].load_settings(cloud_resources.lambda_env(
        FACE_SEARCH="enabled", FACE_COLLECTION="people", FACE_MIN_CONFIDENCE="90"))
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    detectors, face_watch = lambda_modules["detectors"], lambda_modules["face_watch"]
    backoff = detectors.Backoff(attempts=1, sleep=lambda _: None)
    pipeline = lambda_modules["pipeline"].build_pipeline(
        settings, detectors.RekognitionDetector(rekognition, settings.max_labels, settings.min_confidence, backoff))
    pipeline.face_watch = face_watch.FaceWatch(
        face_watch.FaceWatchConfig.from_settings(settings), rekognition, boto3.client("dynamodb"), cloud_resources.face_table,
        boto3.client("sns"), cloud_resources.topic_arn, boto3.client("sqs"), cloud_resources.results_queue_url,
        boto3.client("s3"), backoff)
    function = lambda_modules["handler"].DetectorFunction(settings, pipeline)

    s3 = boto3.client("s3")
    s3.put_object(Bucket=cloud_resources.bucket, Key="claim-check/one.jpg", Body=jpeg())
    frame = make_frame(seq=11, face_candidate=True, jpeg=None, width=WIDTH, height=HEIGHT,
                       s3_bucket=cloud_resources.bucket, s3_key="claim-check/one.jpg")
    stubber = Stubber(rekognition)
    stubber.add_response("detect_labels", {"Labels": [], "LabelModelVersion": "3.0"})
    stubber.add_client_error("detect_faces", "AccessDeniedException", "not yet")  # the first delivery fails here
    stubber.add_response("detect_faces", {"FaceDetails": [{"BoundingBox": box(100, 100, 40, 40), "Confidence": 99.0}]})
    stubber.add_response("search_faces_by_image", {
        "SearchedFaceBoundingBox": {"Left": 1 / 3, "Top": 1 / 3, "Width": 1 / 3, "Height": 1 / 3},
        "SearchedFaceConfidence": 99.0, "FaceModelVersion": "7",
        "FaceMatches": [{"Similarity": 91.0, "Face": {"FaceId": "f-ada", "ExternalImageId": "Ada_Lovelace"}}]})
    with stubber:
        with pytest.raises(BatchProcessingError):  # the only record failed: the invocation fails and is retried
            function.handle(event_of(frame.encode()))
        s3.delete_object(Bucket=cloud_resources.bucket, Key="claim-check/one.jpg")  # only the stored copy is left
        assert function.handle(event_of(frame.encode()))["batchItemFailures"] == []  # no second detect_labels: the stub would refuse it
    stubber.assert_no_pending_responses()
    results = [decode_text(body) for body in cloud_resources.drain(cloud_resources.results_queue_url)]
    assert [type(r).__name__ for r in results] == ["CloudResult", "FaceMatches"]  # the label result was not sent twice
    assert [m.person for m in results[1].matches] == ["Ada Lovelace"] and results[1].alerts == ["Ada Lovelace"]
    assert cloud_resources.alert_texts() == ["Ada Lovelace seen on cam1, similarity 91%"]
