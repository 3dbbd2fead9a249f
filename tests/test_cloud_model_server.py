"""The local model server answers real boto3 Rekognition and SageMaker runtime calls with a real detector."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.local.model_server import LocalModelServer, start_in_thread
from tests.fixtures.cloud import PERSON_JPEG_SIZE, person_jpeg

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
WIDTH, HEIGHT = PERSON_JPEG_SIZE


@pytest.fixture(scope="module")
def model_server() -> Iterator[LocalModelServer]:
    server = start_in_thread(0)
    try:
        yield server
    finally:
        server.stop()


def client(service: str, server: LocalModelServer) -> object:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=NO_RETRIES)


def test_detect_labels_finds_the_person(model_server: LocalModelServer) -> None:
    answer = client("rekognition", model_server).detect_labels(  # type: ignore[attr-defined]
        Image={"Bytes": person_jpeg()}, MaxLabels=5, MinConfidence=50)
    person = next(label for label in answer["Labels"] if label["Name"] == "Person")
    [instance] = person["Instances"]
    box = instance["BoundingBox"]
    # The man stands left of centre and fills most of the frame's height.
    assert 0.2 < box["Left"] < 0.4 and 0.1 < box["Width"] < 0.25 and box["Height"] > 0.5
    assert 50 <= instance["Confidence"] <= 100 and person["Categories"] == [{"Name": "Person Description"}]
    assert all(label["Confidence"] >= 50 for label in answer["Labels"]) and len(answer["Labels"]) <= 5
    assert answer["LabelModelVersion"]


def test_detect_labels_reads_s3_objects(model_server: LocalModelServer, aws_env: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="model-server-images")
    s3.put_object(Bucket="model-server-images", Key="person.jpg", Body=person_jpeg())
    answer = client("rekognition", model_server).detect_labels(  # type: ignore[attr-defined]
        Image={"S3Object": {"Bucket": "model-server-images", "Name": "person.jpg"}}, MinConfidence=50)
    assert "Person" in [label["Name"] for label in answer["Labels"]]


def test_invoke_endpoint_returns_pixel_boxes(model_server: LocalModelServer) -> None:
    response = client("sagemaker-runtime", model_server).invoke_endpoint(  # type: ignore[attr-defined]
        EndpointName="hybridcam-detector", ContentType="image/jpeg", Accept="application/json", Body=person_jpeg())
    body = json.loads(response["Body"].read())
    person = max((d for d in body["detections"] if d["label"] == "Person"), key=lambda d: d["score"])
    x1, y1, x2, y2 = person["box"]
    assert 130 < x1 < x2 < 300 and y1 < 150 and y2 > 330 and y2 <= HEIGHT and person["score"] > 0.5


def test_bad_images_get_aws_error_codes(model_server: LocalModelServer) -> None:
    with pytest.raises(ClientError) as rekognition_error:
        client("rekognition", model_server).detect_labels(Image={"Bytes": b"not an image"})  # type: ignore[attr-defined]
    assert rekognition_error.value.response["Error"]["Code"] == "InvalidImageFormatException"
    with pytest.raises(ClientError) as too_large:
        client("rekognition", model_server).detect_labels(Image={"Bytes": bytes(5 * 1024 * 1024 + 1)})  # type: ignore[attr-defined]
    assert too_large.value.response["Error"]["Code"] == "ImageTooLargeException"


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_throttling_switch(model_server: LocalModelServer, code: str) -> None:
    model_server.throttle(2, code)
    for service, call in (
        ("rekognition", lambda c: c.detect_labels(Image={"Bytes": person_jpeg()})),
        ("sagemaker-runtime", lambda c: c.invoke_endpoint(EndpointName="e", ContentType="image/jpeg", Body=person_jpeg())),
    ):
        with pytest.raises(ClientError) as error:
            call(client(service, model_server))
        assert error.value.response["Error"]["Code"] == code
    assert client("rekognition", model_server).detect_labels(Image={"Bytes": person_jpeg()})["Labels"]  # type: ignore[attr-defined]
