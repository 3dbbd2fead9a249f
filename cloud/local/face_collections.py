"""Rekognition's face APIs, served locally with real models (BlazeFace + FaceRes, cloud/local/face_models.py).

Operations (JSON 1.1 bodies and answers as botocore's Rekognition model defines them):
CreateCollection, DescribeCollection, DeleteCollection, ListCollections, IndexFaces, ListFaces,
DeleteFaces, DetectFaces, SearchFacesByImage. Collections live in memory (a restart forgets them, as a
deleted stack would); each indexed face keeps its unit descriptor, never the image.

Errors use Rekognition's codes: ResourceNotFoundException (no such collection),
ResourceAlreadyExistsException, InvalidParameterException (e.g. "There are no faces in the image.
Should be at least 1." from SearchFacesByImage, as AWS answers).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cloud.local.face_models import LANDMARK_NAMES, BlazeFaceDetector, FaceResDescriber, FoundFace, face_quality, similarity

FACE_MODEL_VERSION = "hybridcam-local-faces-1.0"
LOCAL_ACCOUNT = "123456789012"
DEFAULT_FACE_MATCH_THRESHOLD = 80.0
DEFAULT_MAX_SEARCH_FACES = 100
MAX_LIST_FACES = 4096
# Rekognition's IndexFaces QualityFilter AUTO refuses faces it cannot use; locally that is a face whose
# short side is under this many pixels or whose detector score is under this.
INDEX_MIN_FACE_PX = 12.0
INDEX_MIN_SCORE = 0.7


class FaceApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class IndexedFace:
    face_id: str
    image_id: str
    external_image_id: str
    bounding_box: dict[str, float]
    confidence: float
    descriptor: np.ndarray

    def describe(self) -> dict[str, Any]:
        face = {"FaceId": self.face_id, "BoundingBox": self.bounding_box, "ImageId": self.image_id,
                "Confidence": self.confidence, "IndexFacesModelVersion": FACE_MODEL_VERSION}
        if self.external_image_id:
            face["ExternalImageId"] = self.external_image_id
        return face


@dataclass
class Collection:
    collection_id: str
    arn: str
    created: float
    faces: dict[str, IndexedFace] = field(default_factory=dict)


def ratio_box(box: tuple[float, float, float, float], width: int, height: int) -> dict[str, float]:
    x1, y1, x2, y2 = box
    return {"Width": (x2 - x1) / width, "Height": (y2 - y1) / height, "Left": x1 / width, "Top": y1 / height}


def face_detail(face: FoundFace, image: np.ndarray) -> dict[str, Any]:
    height, width = image.shape[:2]
    brightness, sharpness = face_quality(image, face.box)
    (right_eye, left_eye) = face.landmarks[0], face.landmarks[1]
    roll = float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))
    return {
        "BoundingBox": ratio_box(face.box, width, height),
        "Landmarks": [{"Type": name, "X": x / width, "Y": y / height}
                      for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks)],
        "Pose": {"Roll": roll, "Yaw": 0.0, "Pitch": 0.0},
        "Quality": {"Brightness": brightness, "Sharpness": sharpness},
        "Confidence": face.score * 100.0,
    }


class LocalFaceCollections:
    """The face operations; models load on the first face call so label-only users never pay for them."""

    def __init__(self, providers: list[str] | None = None) -> None:
        self._providers = providers
        self._detector: BlazeFaceDetector | None = None
        self._describer: FaceResDescriber | None = None
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self.region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"

    def operations(self) -> dict[str, Callable[[dict[str, Any], Callable[[], bytes]], dict[str, Any]]]:
        """Target name (after ``RekognitionService.``) -> handler(request, image_loader)."""
        return {
            "CreateCollection": lambda request, _: self.create_collection(request),
            "DescribeCollection": lambda request, _: self.describe_collection(request),
            "DeleteCollection": lambda request, _: self.delete_collection(request),
            "ListCollections": lambda request, _: self.list_collections(),
            "ListFaces": lambda request, _: self.list_faces(request),
            "DeleteFaces": lambda request, _: self.delete_faces(request),
            "IndexFaces": self.index_faces,
            "DetectFaces": self.detect_faces,
            "SearchFacesByImage": self.search_faces_by_image,
        }

    # -- models ------------------------------------------------------------------------------
    def _models(self) -> tuple[BlazeFaceDetector, FaceResDescriber]:
        with self._lock:
            if self._detector is None or self._describer is None:
                self._detector = BlazeFaceDetector(providers=self._providers)
                self._describer = FaceResDescriber(providers=self._providers)
            return self._detector, self._describer

    @staticmethod
    def _decode(image_bytes: bytes) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FaceApiError("InvalidImageFormatException", "Request has invalid image format")
        return image

    def _faces(self, image: np.ndarray) -> list[FoundFace]:
        detector, _ = self._models()
        with self._lock:
            return detector.detect(image)

    def _describe(self, image: np.ndarray, face: FoundFace) -> np.ndarray:
        _, describer = self._models()
        with self._lock:
            return describer.describe(image, face.box)

    # -- collections -------------------------------------------------------------------------
    def has_collection(self, collection_id: str) -> bool:
        return collection_id in self._collections

    def _collection(self, request: dict[str, Any]) -> Collection:
        collection_id = str(request.get("CollectionId", ""))
        collection = self._collections.get(collection_id)
        if collection is None:
            raise FaceApiError("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        return collection

    def create_collection(self, request: dict[str, Any]) -> dict[str, Any]:
        collection_id = str(request.get("CollectionId", "")).strip()
        if not collection_id:
            raise FaceApiError("InvalidParameterException", "CollectionId is required")
        with self._lock:
            if collection_id in self._collections:
                raise FaceApiError("ResourceAlreadyExistsException", f"The collection id: {collection_id} already exists")
            arn = f"aws:rekognition:{self.region}:{LOCAL_ACCOUNT}:collection/{collection_id}"
            self._collections[collection_id] = Collection(collection_id, arn, time.time())
        return {"StatusCode": 200, "CollectionArn": arn, "FaceModelVersion": FACE_MODEL_VERSION}

    def describe_collection(self, request: dict[str, Any]) -> dict[str, Any]:
        collection = self._collection(request)
        return {"FaceCount": len(collection.faces), "FaceModelVersion": FACE_MODEL_VERSION,
                "CollectionARN": collection.arn, "CreationTimestamp": collection.created}

    def delete_collection(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            collection = self._collection(request)
            del self._collections[collection.collection_id]
        return {"StatusCode": 200}

    def list_collections(self) -> dict[str, Any]:
        names = sorted(self._collections)
        return {"CollectionIds": names, "FaceModelVersions": [FACE_MODEL_VERSION] * len(names)}

    # -- faces -------------------------------------------------------------------------------
    def index_faces(self, request: dict[str, Any], load_image: Callable[[], bytes]) -> dict[str, Any]:
        collection = self._collection(request)
        image = self._decode(load_image())
        height, width = image.shape[:2]
        max_faces = int(request.get("MaxFaces") or 100)
        quality_filter = str(request.get("QualityFilter") or "AUTO")
        external_id = str(request.get("ExternalImageId") or "")
        image_id = str(uuid.uuid4())
        records, unindexed = [], []
        for rank, face in enumerate(self._faces(image)):
            detail = face_detail(face, image)
            reasons = []
            if rank >= max_faces:
                reasons.append("EXCEEDS_MAX_FACES")
            if quality_filter != "NONE" and min(face.width, face.height) < INDEX_MIN_FACE_PX:
                reasons.append("SMALL_BOUNDING_BOX")
            if quality_filter != "NONE" and face.score < INDEX_MIN_SCORE:
                reasons.append("LOW_CONFIDENCE")
            if reasons:
                unindexed.append({"Reasons": reasons, "FaceDetail": detail})
                continue
            indexed = IndexedFace(str(uuid.uuid4()), image_id, external_id, ratio_box(face.box, width, height),
                                  face.score * 100.0, self._describe(image, face))
            with self._lock:
                collection.faces[indexed.face_id] = indexed
            records.append({"Face": indexed.describe(), "FaceDetail": detail})
        return {"FaceRecords": records, "FaceModelVersion": FACE_MODEL_VERSION, "UnindexedFaces": unindexed}

    def list_faces(self, request: dict[str, Any]) -> dict[str, Any]:
        collection = self._collection(request)
        faces = sorted(collection.faces.values(), key=lambda face: face.face_id)
        start = int(request.get("NextToken") or 0)
        count = min(int(request.get("MaxResults") or MAX_LIST_FACES), MAX_LIST_FACES)
        page = faces[start:start + count]
        answer: dict[str, Any] = {"Faces": [face.describe() for face in page], "FaceModelVersion": FACE_MODEL_VERSION}
        if start + count < len(faces):
            answer["NextToken"] = str(start + count)
        return answer

    def delete_faces(self, request: dict[str, Any]) -> dict[str, Any]:
        collection = self._collection(request)
        deleted, failed = [], []
        with self._lock:
            for face_id in request.get("FaceIds") or []:
                if collection.faces.pop(str(face_id), None) is not None:
                    deleted.append(str(face_id))
                else:
                    failed.append({"FaceId": str(face_id), "Reasons": ["FACE_NOT_FOUND"]})
        return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}

    def detect_faces(self, request: dict[str, Any], load_image: Callable[[], bytes]) -> dict[str, Any]:
        image = self._decode(load_image())
        return {"FaceDetails": [face_detail(face, image) for face in self._faces(image)]}

    def search_faces_by_image(self, request: dict[str, Any], load_image: Callable[[], bytes]) -> dict[str, Any]:
        """Like AWS: search with the largest face in the image only."""
        collection = self._collection(request)
        image = self._decode(load_image())
        height, width = image.shape[:2]
        faces = self._faces(image)
        if not faces:
            raise FaceApiError("InvalidParameterException", "There are no faces in the image. Should be at least 1.")
        largest = max(faces, key=lambda face: face.width * face.height)
        threshold = float(request.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD))
        max_faces = int(request.get("MaxFaces") or DEFAULT_MAX_SEARCH_FACES)
        matches = self._matches(collection, self._describe(image, largest), threshold, max_faces)
        return {
            "SearchedFaceBoundingBox": ratio_box(largest.box, width, height),
            "SearchedFaceConfidence": largest.score * 100.0,
            "FaceMatches": matches,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def search_every_face(self, collection_id: str, image: np.ndarray, threshold: float,
                          max_faces: int = DEFAULT_MAX_SEARCH_FACES) -> list[tuple[dict[str, Any], list[dict[str, Any]], np.ndarray]]:
        """(FaceDetail, FaceMatches, descriptor) of every face in a video frame, each searched as
        SearchFacesByImage searches its one face (same descriptor, similarity and threshold)."""
        collection = self._collection({"CollectionId": collection_id})
        found = []
        for face in self._faces(image):
            descriptor = self._describe(image, face)
            found.append((face_detail(face, image), self._matches(collection, descriptor, threshold, max_faces), descriptor))
        return found

    def _matches(self, collection: Collection, descriptor: np.ndarray, threshold: float,
                 max_faces: int) -> list[dict[str, Any]]:
        with self._lock:
            scored = [(similarity(descriptor, face.descriptor), face) for face in collection.faces.values()]
        matches = sorted((pair for pair in scored if pair[0] >= threshold), key=lambda pair: -pair[0])[:max_faces]
        return [{"Similarity": score, "Face": face.describe()} for score, face in matches]
