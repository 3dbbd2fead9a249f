"""`hybridcam faces remove` erases a person (security review, finding 6): every match item and the alert
cooldown, found by one consistent Query on the person's partition (no eventually consistent Scan), a match
an in-flight search writes after the first sweep, and a face Rekognition fails to delete is reported.

DynamoDB is the moto server; Rekognition's answers are stubbed (this pins down what remove does with them;
tests/test_faces_e2e.py runs the whole walk on the local model server).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cloud.watch_list import WatchList, WatchListError
from tests.fixtures.cloud import CloudResources


def _put(table: str, person: str, sk: str, **extra: Any) -> None:
    item = {"person": {"S": person}, "sk": {"S": sk}, "crop_jpeg": {"B": b"\xff\xd8\xff face"}, **extra}
    boto3.client("dynamodb").put_item(TableName=table, Item=item)


def _items(table: str) -> list[tuple[str, str]]:
    return sorted((i["person"]["S"], i["sk"]["S"]) for i in boto3.client("dynamodb").scan(TableName=table)["Items"])


def _rekognition(unsuccessful: list[dict[str, Any]] | None = None) -> tuple[Any, Stubber]:
    client = boto3.client("rekognition", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("list_faces", {"Faces": [{"FaceId": "f-ada-1", "ExternalImageId": "Ada_Lovelace"},
                                                  {"FaceId": "f-bob", "ExternalImageId": "Bob"}]})
    answer: dict[str, Any] = {"UnsuccessfulFaceDeletions": unsuccessful} if unsuccessful else {"DeletedFaces": ["f-ada-1"]}
    stubber.add_response("delete_faces", answer,
                         {"CollectionId": "people", "FaceIds": ["f-ada-1"]})
    return client, stubber


def test_remove_erases_every_item_of_the_person_including_a_late_match(cloud_resources: CloudResources) -> None:
    table = cloud_resources.face_table
    for n in range(30):
        _put(table, "Ada Lovelace", f"match#cam1-{n}-{n}#0")
    _put(table, "Ada Lovelace", "cooldown")
    _put(table, "Bob", "match#cam1-5-5#0")
    rekognition, stubber = _rekognition()

    def in_flight_search_writes(seconds: float) -> None:  # a Lambda that searched before DeleteFaces
        assert seconds == 7.0
        _put(table, "Ada Lovelace", "match#cam2-99-99#0")

    with stubber:
        removal = WatchList(rekognition, "people", boto3.client("dynamodb"), table, say=lambda _: None).remove(
            "Ada Lovelace", settle_s=7.0, sleep=in_flight_search_writes)
    assert (removal.faces, removal.match_items) == (1, 31)
    assert _items(table) == [("Bob", "match#cam1-5-5#0")]


def test_a_face_rekognition_did_not_delete_is_reported(cloud_resources: CloudResources) -> None:
    rekognition, stubber = _rekognition([{"FaceId": "f-ada-1", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}])
    with stubber, pytest.raises(WatchListError, match=r"did not delete 1 of Ada Lovelace's 1 face\(s\): f-ada-1 "
                                                      r"\(ASSOCIATED_TO_AN_EXISTING_USER\)"):
        WatchList(rekognition, "people", boto3.client("dynamodb"), cloud_resources.face_table, say=lambda _: None).remove(
            "Ada Lovelace", settle_s=0)
