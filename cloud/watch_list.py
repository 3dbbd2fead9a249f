"""The face watch-list as the operator manages it: enrol, list and remove people in the Rekognition collection.

Runs with the operator's AWS credentials, never from the edge services (the Lambda may only search).

- ``enroll(name, images)``: every image must show exactly one face (checked with DetectFaces before any
  face is indexed); each is indexed with IndexFaces (ExternalImageId = the name, spaces as underscores,
  QualityFilter AUTO, MaxFaces 1). The collection is created when it does not exist yet (the stack
  creates it in AWS; the local stand-in starts empty).
- ``people()``: ListFaces, grouped by person.
- ``remove(name)``: DeleteFaces of all the person's faces (a face Rekognition reports in
  UnsuccessfulFaceDeletions is named and makes the removal fail), then deletes every item of the person
  in the face matches table (matches with their crops, the alert cooldown): one strongly consistent
  Query on the person's partition. A Lambda that searched the face just before DeleteFaces can still
  write a match for up to its 60 s time-out, so the table is swept again after ``settle_s``.
  What removal cannot reach is listed in docs/faces.md (privacy table).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shared.schemas import face_external_id, face_person

REKOGNITION_BYTES_LIMIT = 5 * 1024 * 1024
MATCH_KEY_PREFIX = "match#"  # sort key of a match item (cloud/lambda/detector_lambda/face_watch.py)
LAMBDA_TIMEOUT_S = 60.0  # the detector's time-out in the template: how long an in-flight search can still write


class WatchListError(Exception):
    """Something the operator must fix, said in one sentence."""


@dataclass(frozen=True)
class EnrolledFace:
    face_id: str
    image: str
    confidence: float


@dataclass(frozen=True)
class Removal:
    faces: int
    match_items: int
    failed_faces: tuple[str, ...] = ()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class WatchList:
    def __init__(self, rekognition: Any, collection_id: str, dynamodb: Any = None, table: str | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.rekognition = rekognition
        self.collection_id = collection_id
        self.dynamodb = dynamodb
        self.table = table
        self.say = say

    # -- enrol -------------------------------------------------------------------------------
    @staticmethod
    def read_image(path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise WatchListError(f"cannot read {path}: {error.strerror or error}.") from None
        if not data.startswith((b"\xff\xd8\xff", b"\x89PNG")):
            raise WatchListError(f"{path} is not a JPEG or PNG image.")
        if len(data) > REKOGNITION_BYTES_LIMIT:
            raise WatchListError(f"{path} is {len(data) / 1e6:.1f} MB; Rekognition takes at most 5 MB: scale it down.")
        return data

    def check_one_face(self, path: Path, data: bytes) -> None:
        try:
            faces = self.rekognition.detect_faces(Image={"Bytes": data}).get("FaceDetails", [])
        except ClientError as error:
            if _code(error) == "InvalidImageFormatException":
                raise WatchListError(f"{path} could not be decoded as an image.") from None
            raise
        if not faces:
            raise WatchListError(f"{path} shows no face; enrol a photo where the person's face is clearly visible.")
        if len(faces) > 1:
            raise WatchListError(f"{path} shows {len(faces)} faces; crop it to the one person to enrol.")

    def ensure_collection(self) -> None:
        try:
            self.rekognition.describe_collection(CollectionId=self.collection_id)
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise
            self.rekognition.create_collection(CollectionId=self.collection_id)
            self.say(f"created the face collection {self.collection_id}")

    def enroll(self, name: str, images: list[Path]) -> list[EnrolledFace]:
        try:
            external_id = face_external_id(name)
        except ValueError as error:
            raise WatchListError(str(error)) from None
        if not images:
            raise WatchListError("give at least one image of the person.")
        self.ensure_collection()
        loaded = [(path, self.read_image(path)) for path in images]
        for path, data in loaded:  # every image is checked before any face is indexed
            self.check_one_face(path, data)
        enrolled = []
        for path, data in loaded:
            answer = self.rekognition.index_faces(CollectionId=self.collection_id, Image={"Bytes": data},
                                                  ExternalImageId=external_id, MaxFaces=1, QualityFilter="AUTO",
                                                  DetectionAttributes=["DEFAULT"])
            records = answer.get("FaceRecords", [])
            if not records:
                reasons = sorted({r for face in answer.get("UnindexedFaces", []) for r in face.get("Reasons", [])})
                raise WatchListError(f"{path}: Rekognition would not index the face ({', '.join(reasons) or 'no reason given'}); "
                                     "use a sharper, larger, frontal photo.")
            face = records[0]["Face"]
            enrolled.append(EnrolledFace(str(face["FaceId"]), str(path), float(face.get("Confidence", 0.0))))
            self.say(f"enrolled {face_person(external_id)} from {path} (face {face['FaceId']})")
        return enrolled

    # -- list --------------------------------------------------------------------------------
    def faces(self) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            options: dict[str, Any] = {"CollectionId": self.collection_id, "MaxResults": 1000}
            if token:
                options["NextToken"] = token
            try:
                answer = self.rekognition.list_faces(**options)
            except ClientError as error:
                if _code(error) == "ResourceNotFoundException":
                    return
                raise
            yield from answer.get("Faces", [])
            token = answer.get("NextToken")
            if not token:
                return

    def people(self) -> dict[str, list[str]]:
        """Person -> face ids in the collection."""
        grouped: dict[str, list[str]] = defaultdict(list)
        for face in self.faces():
            grouped[face_person(str(face.get("ExternalImageId") or "(no name)"))].append(str(face["FaceId"]))
        return dict(sorted(grouped.items()))

    # -- remove ------------------------------------------------------------------------------
    def remove(self, name: str, settle_s: float = LAMBDA_TIMEOUT_S + 5.0,
               sleep: Callable[[float], None] = time.sleep) -> Removal:
        try:
            external_id = face_external_id(name)
        except ValueError as error:
            raise WatchListError(str(error)) from None
        face_ids = [str(face["FaceId"]) for face in self.faces() if face.get("ExternalImageId") == external_id]
        failed: list[str] = []
        for start in range(0, len(face_ids), 1000):
            answer = self.rekognition.delete_faces(CollectionId=self.collection_id, FaceIds=face_ids[start:start + 1000])
            failed += [f"{f.get('FaceId')} ({', '.join(f.get('Reasons', [])) or 'no reason given'})"
                       for f in answer.get("UnsuccessfulFaceDeletions", [])]
        items = 0
        if self.dynamodb is not None and self.table:
            person = face_person(external_id)
            items = self.remove_match_items(person)
            if face_ids and settle_s > 0:
                self.say(f"waiting {settle_s:g} s for searches already running, then sweeping the matches again")
                sleep(settle_s)
                items += self.remove_match_items(person)
        if failed:
            raise WatchListError(f"Rekognition did not delete {len(failed)} of {name}'s {len(face_ids)} face(s): "
                                 f"{'; '.join(failed)}; run `hybridcam faces remove` again.")
        return Removal(len(face_ids), items)

    def remove_match_items(self, person: str) -> int:
        """Delete every item of the person (matches, alert cooldown) from the face matches table; returns the matches deleted."""
        keys: list[dict[str, Any]] = []
        options: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True, "ProjectionExpression": "person, sk",
            "KeyConditionExpression": "person = :person", "ExpressionAttributeValues": {":person": {"S": person}},
        }
        while True:
            page = self.dynamodb.query(**options)
            keys += [{"person": item["person"], "sk": item["sk"]} for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            options["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for key in keys:
            self.dynamodb.delete_item(TableName=self.table, Key=key)
        return sum(1 for key in keys if key["sk"]["S"].startswith(MATCH_KEY_PREFIX))
