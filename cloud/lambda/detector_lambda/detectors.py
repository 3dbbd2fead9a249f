"""Detector backends: Rekognition DetectLabels and a SageMaker endpoint (InvokeEndpoint, JSON out).

Both turn one frame into FoundLabel values in frame pixels. Throttling and other transient service
errors are retried here with exponential backoff and jitter; botocore's own retries are switched off
for these clients (see ``client_config``) so that one policy decides.

SageMaker endpoint contract (what cloud/local/model_server.py serves): request body image/jpeg,
response application/json ``{"model": str, "detections": [{"label": str, "score": 0..1,
"box": [x1, y1, x2, y2] (frame pixels)}]}``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.config import Config
from botocore.exceptions import ClientError

from detector_lambda.logs import logger
from detector_lambda.records import RecordError

RETRYABLE_CODES = frozenset({
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalServerError",
    "InternalFailure",
    "ModelNotReadyException",
})
# Errors about the image itself: retrying cannot help.
PERMANENT_IMAGE_CODES = frozenset({"InvalidImageFormatException", "ImageTooLargeException", "InvalidS3ObjectException"})
REKOGNITION_BYTES_LIMIT = 5 * 1024 * 1024


def client_config() -> Config:
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@dataclass(frozen=True)
class FoundLabel:
    """One label; ``box`` is x1, y1, x2, y2 in frame pixels, or None for a frame-level label."""

    name: str
    confidence: float  # 0-100, as Rekognition reports it
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class FrameImage:
    """The frame's JPEG: inline bytes, or where it lies in S3 (claim check), or both."""

    width: int
    height: int
    jpeg: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4
    base_s: float = 0.2
    max_s: float = 3.0
    sleep: Callable[[float], None] = time.sleep

    def call(self, operation: str, request: Callable[[], Any]) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in PERMANENT_IMAGE_CODES:
                    raise RecordError(f"{operation} rejected the image: {code}") from None
                if code not in RETRYABLE_CODES or attempt == self.attempts:
                    raise
                delay = random.uniform(0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))
                logger.warning("%s answered %s (attempt %d of %d); retrying in %.2f s",
                            operation, code, attempt, self.attempts, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")


class LabelDetector(Protocol):
    backend: str

    @property
    def model(self) -> str: ...

    def needs_bytes(self, image: FrameImage) -> bool: ...

    def detect(self, image: FrameImage) -> list[FoundLabel]: ...


def clip_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> tuple[float, float, float, float]:
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def pixel_box(bounding_box: dict[str, float], width: int, height: int) -> tuple[float, float, float, float]:
    """Rekognition's BoundingBox (ratios of the frame) -> x1, y1, x2, y2 in pixels."""
    left, top = float(bounding_box.get("Left", 0.0)), float(bounding_box.get("Top", 0.0))
    x2 = left + float(bounding_box.get("Width", 0.0))
    y2 = top + float(bounding_box.get("Height", 0.0))
    return clip_box(left * width, top * height, x2 * width, y2 * height, width, height)


def labels_from_rekognition(response: dict[str, Any], width: int, height: int, min_confidence: float) -> list[FoundLabel]:
    found: list[FoundLabel] = []
    for label in response.get("Labels", []):
        name = str(label["Name"])
        boxed = [i for i in label.get("Instances", []) if i.get("BoundingBox")]
        if not boxed:
            found.append(FoundLabel(name, float(label.get("Confidence", 0.0))))
            continue
        for instance in boxed:
            confidence = float(instance.get("Confidence", label.get("Confidence", 0.0)))
            if confidence >= min_confidence:
                found.append(FoundLabel(name, confidence, pixel_box(instance["BoundingBox"], width, height)))
    return found


class RekognitionDetector:
    backend = "rekognition"

    def __init__(self, client: Any, max_labels: int, min_confidence: float, backoff: Backoff = Backoff()) -> None:
        self.client = client
        self.max_labels = max_labels
        self.min_confidence = min_confidence
        self.backoff = backoff
        self._model_version = ""

    @property
    def model(self) -> str:
        return f"rekognition-{self._model_version or 'unknown'}"

    def needs_bytes(self, image: FrameImage) -> bool:
        return image.s3_key is None

    def detect(self, image: FrameImage) -> list[FoundLabel]:
        if image.jpeg is not None and len(image.jpeg) <= REKOGNITION_BYTES_LIMIT:
            source: dict[str, Any] = {"Bytes": image.jpeg}
        elif image.s3_bucket and image.s3_key:
            source = {"S3Object": {"Bucket": image.s3_bucket, "Name": image.s3_key}}
        else:
            raise RecordError("image is over Rekognition's 5 MB limit and has no S3 location")
        response = self.backoff.call("DetectLabels", lambda: self.client.detect_labels(
            Image=source, MaxLabels=self.max_labels, MinConfidence=self.min_confidence))
        self._model_version = str(response.get("LabelModelVersion", ""))
        return labels_from_rekognition(response, image.width, image.height, self.min_confidence)


class SageMakerDetector:
    backend = "sagemaker"

    def __init__(self, client: Any, endpoint: str, min_confidence: float, backoff: Backoff = Backoff()) -> None:
        self.client = client
        self.endpoint = endpoint
        self.min_confidence = min_confidence
        self.backoff = backoff
        self._model = ""

    @property
    def model(self) -> str:
        return f"sagemaker:{self.endpoint}" + (f"/{self._model}" if self._model else "")

    def needs_bytes(self, image: FrameImage) -> bool:
        return True

    def detect(self, image: FrameImage) -> list[FoundLabel]:
        if image.jpeg is None:
            raise RecordError("the SageMaker backend needs the image bytes")
        response = self.backoff.call("InvokeEndpoint", lambda: self.client.invoke_endpoint(
            EndpointName=self.endpoint, ContentType="image/jpeg", Accept="application/json", Body=image.jpeg))
        body = json.loads(response["Body"].read())
        self._model = str(body.get("model", ""))
        found = []
        for item in body.get("detections", []):
            confidence = float(item["score"]) * 100.0
            if confidence >= self.min_confidence:
                x1, y1, x2, y2 = (float(v) for v in item["box"])
                found.append(FoundLabel(str(item["label"]), confidence, clip_box(x1, y1, x2, y2, image.width, image.height)))
        return found
