"""The face step never pays Rekognition twice for one frame, and searches frames over 5 MB (security
review, finding 11). moto for DynamoDB/S3/SNS/SQS; Rekognition's answers are stubbed, so any call not
queued here fails the test: that is how a repeated paid call shows."""

from __future__ import annotations

import io
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from PIL import Image

from shared.schemas import FaceMatches, decode_text
from tests.fixtures.cloud import CloudResources, make_frame

WIDTH, HEIGHT = 640, 424


def _jpeg(width: int = WIDTH, height: int = HEIGHT, noise: bool = False) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else \
        np.full((height, width, 3), 90, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


def _box(x: float, y: float, w: float, h: float, width: int = WIDTH, height: int = HEIGHT) -> dict[str, float]:
    return {"Left": x / width, "Top": y / height, "Width": w / width, "Height": h / height}


SEARCHED = {"SearchedFaceBoundingBox": {"Left": 1 / 3, "Top": 1 / 3, "Width": 1 / 3, "Height": 1 / 3},
            "SearchedFaceConfidence": 99.0, "FaceModelVersion": "7",
            "FaceMatches": [{"Similarity": 93.4, "Face": {"FaceId": "f-ada", "ExternalImageId": "Ada_Lovelace"}}]}


def _watch(module: Any, resources: CloudResources, rekognition: Any, topic_arn: str) -> Any:
    config = module.FaceWatchConfig(collection_id="people", enabled=True, min_confidence=90.0)
    return module.FaceWatch(config, rekognition, boto3.client("dynamodb"), resources.face_table, boto3.client("sns"),
                            topic_arn, boto3.client("sqs"), resources.results_queue_url, boto3.client("s3"))


def test_a_retry_after_a_failure_past_the_searches_pays_no_rekognition_call(
        lambda_modules: dict[str, Any], cloud_resources: CloudResources) -> None:
    face_watch = lambda_modules["face_watch"]
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(rekognition)
    stubber.add_response("detect_faces", {"FaceDetails": [{"BoundingBox": _box(100, 100, 40, 40), "Confidence": 99.0}]})
    stubber.add_response("search_faces_by_image", SEARCHED)  # only once: a second search would find no answer queued
    frame = make_frame(seq=21, face_candidate=True, jpeg=_jpeg(), width=WIDTH, height=HEIGHT)
    image = face_watch.FrameImage(WIDTH, HEIGHT, jpeg=frame.jpeg)
    with stubber:
        gone_topic = cloud_resources.topic_arn + "-gone"  # SNS fails after the searches: the record is retried
        with pytest.raises(Exception, match="NotFound|does not exist"):
            _watch(face_watch, cloud_resources, rekognition, gone_topic).process(frame, image, 1767225601.0)
        sent = _watch(face_watch, cloud_resources, rekognition, cloud_resources.topic_arn).process(frame, image, 1767225602.0)
        stubber.assert_no_pending_responses()
    assert [m.person for m in sent.matches] == ["Ada Lovelace"] and sent.matches[0].crop_jpeg
    assert sent.alerts == ["Ada Lovelace"]
    [message] = [decode_text(b) for b in cloud_resources.drain(cloud_resources.results_queue_url)]
    assert isinstance(message, FaceMatches) and message.matches[0].similarity == 93.4
    items = boto3.client("dynamodb").scan(TableName=cloud_resources.face_table)["Items"]
    assert sorted(i["sk"]["S"] for i in items) == ["cooldown", f"match#{frame.frame_id}#0"]  # the progress item is gone


def test_a_frame_over_5_mb_is_searched_through_its_stored_copy(
        lambda_modules: dict[str, Any], cloud_resources: CloudResources) -> None:
    face_watch = lambda_modules["face_watch"]
    big = _jpeg(2600, 1700, noise=True)
    assert len(big) > 5 * 1024 * 1024
    boto3.client("s3").put_object(Bucket=cloud_resources.bucket, Key="frames/cam1/big.jpg", Body=big)
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(rekognition)
    stubber.add_response("detect_faces", {"FaceDetails": []}, {
        "Image": {"S3Object": {"Bucket": cloud_resources.bucket, "Name": "frames/cam1/big.jpg"}}, "Attributes": ["DEFAULT"]})
    frame = make_frame(seq=22, face_candidate=True, jpeg=None, width=2600, height=1700,
                       s3_bucket=cloud_resources.bucket, s3_key="claim-check/big.jpg")
    image = face_watch.FrameImage(2600, 1700, s3_bucket=cloud_resources.bucket, s3_key="frames/cam1/big.jpg")
    with stubber:
        result = _watch(face_watch, cloud_resources, rekognition, cloud_resources.topic_arn).process(frame, image, 1767225601.0)
        stubber.assert_no_pending_responses()
    assert result is not None and result.matches == []


def test_the_pipeline_skips_a_frame_whose_faces_are_done(lambda_modules: dict[str, Any], cloud_resources: CloudResources) -> None:
    settings = lambda_modules["settings"].load_settings(cloud_resources.lambda_env(
        FACE_SEARCH="enabled", FACE_COLLECTION="people", FACE_MIN_CONFIDENCE="90"))
    rekognition = boto3.client("rekognition", region_name="us-east-1")
    detectors, face_watch = lambda_modules["detectors"], lambda_modules["face_watch"]
    backoff = detectors.Backoff(attempts=1, sleep=lambda _: None)
    pipeline = lambda_modules["pipeline"].build_pipeline(
        settings, detectors.RekognitionDetector(rekognition, settings.max_labels, settings.min_confidence, backoff))
    pipeline.face_watch = _watch(face_watch, cloud_resources, rekognition, cloud_resources.topic_arn)
    stubber = Stubber(rekognition)
    stubber.add_response("detect_labels", {"Labels": [], "LabelModelVersion": "3.0"})
    stubber.add_response("detect_faces", {"FaceDetails": []})
    frame = make_frame(seq=23, face_candidate=True, jpeg=_jpeg(), width=WIDTH, height=HEIGHT)
    record = lambda_modules["records"].FrameRecord(frame=frame, sequence_number="1", partition_key="cam1")
    with stubber:
        assert pipeline.process(record).faces_done
        assert pipeline.process(record).faces_done  # the retry: no label or face call left to answer it
        stubber.assert_no_pending_responses()
