"""The local model server answers Rekognition's face APIs through real boto3 calls, with real face models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import boto3
import cv2
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.local.model_server import LocalModelServer, start_in_thread

FACES = Path(__file__).resolve().parent / "data" / "faces"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def rekognition() -> Iterator[object]:
    server: LocalModelServer = start_in_thread(0, detector="nanodet")
    try:
        yield boto3.client("rekognition", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="local",
                           aws_secret_access_key="local", config=NO_RETRIES)
    finally:
        server.stop()


def last_walking_frame() -> bytes:
    with av.open(str(FACES / "walking.mp4")) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return cv2.imencode(".jpg", frames[-1])[1].tobytes()


def error_code(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"])


def test_collections_faces_and_search_behave_like_rekognition(rekognition) -> None:  # type: ignore[no-untyped-def]
    client = rekognition
    created = client.create_collection(CollectionId="people")
    assert created["StatusCode"] == 200 and created["CollectionArn"].endswith(":collection/people")
    assert error_code(lambda: client.create_collection(CollectionId="people")) == "ResourceAlreadyExistsException"
    assert "people" in client.list_collections()["CollectionIds"]

    woman = (FACES / "enrol-walking-woman.jpg").read_bytes()
    indexed = client.index_faces(CollectionId="people", Image={"Bytes": woman}, ExternalImageId="Walking_Woman", MaxFaces=1)
    [record] = indexed["FaceRecords"]
    assert record["Face"]["ExternalImageId"] == "Walking_Woman" and record["FaceDetail"]["Confidence"] > 60
    # Two walkers, one allowed: the second is reported unindexed, as Rekognition does.
    both = client.index_faces(CollectionId="people", Image={"Bytes": last_walking_frame()}, ExternalImageId="both", MaxFaces=1)
    assert len(both["FaceRecords"]) == 1 and both["UnindexedFaces"][0]["Reasons"] == ["EXCEEDS_MAX_FACES"]
    assert client.describe_collection(CollectionId="people")["FaceCount"] == 2

    detected = client.detect_faces(Image={"Bytes": last_walking_frame()})["FaceDetails"]
    assert len(detected) == 2
    left, right = sorted(detected, key=lambda face: face["BoundingBox"]["Left"])
    assert 0.3 < left["BoundingBox"]["Left"] < 0.4 and 0.55 < right["BoundingBox"]["Left"] < 0.65  # woman, man
    assert {mark["Type"] for mark in left["Landmarks"]} >= {"eyeLeft", "eyeRight", "nose"}
    assert 0 <= left["Quality"]["Brightness"] <= 100

    found = client.search_faces_by_image(CollectionId="people", Image={"Bytes": woman}, FaceMatchThreshold=80, MaxFaces=5)
    assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "Walking_Woman"
    assert found["FaceMatches"][0]["Similarity"] > 95 and found["SearchedFaceConfidence"] > 60
    horses = (FACES.parent / "horses.jpg").read_bytes()
    assert error_code(lambda: client.search_faces_by_image(CollectionId="people", Image={"Bytes": horses})) == "InvalidParameterException"
    assert error_code(lambda: client.search_faces_by_image(CollectionId="nobody", Image={"Bytes": woman})) == "ResourceNotFoundException"

    first = client.list_faces(CollectionId="people", MaxResults=1)
    second = client.list_faces(CollectionId="people", MaxResults=1, NextToken=first["NextToken"])
    ids = [face["FaceId"] for face in first["Faces"] + second["Faces"]]
    assert len(set(ids)) == 2 and "NextToken" not in second
    deleted = client.delete_faces(CollectionId="people", FaceIds=[*ids, "no-such-face"])
    assert sorted(deleted["DeletedFaces"]) == sorted(ids)
    assert deleted["UnsuccessfulFaceDeletions"] == [{"FaceId": "no-such-face", "Reasons": ["FACE_NOT_FOUND"]}]
    assert client.search_faces_by_image(CollectionId="people", Image={"Bytes": woman})["FaceMatches"] == []
    assert error_code(lambda: client.detect_faces(Image={"Bytes": b"\xff\xd8\xffnot really"})) == "InvalidImageFormatException"
