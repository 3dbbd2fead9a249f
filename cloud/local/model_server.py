"""A local model server that speaks the SageMaker runtime and Rekognition DetectLabels protocols.

Real boto3 calls reach it through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME / AWS_ENDPOINT_URL_REKOGNITION and
get answers from a real detector: the cloud tier of vision/detectors ("tiled":
CenterNet on the full frame + NanoDet on tiles; models/centernet.onnx and models/nanodet.onnx).

Public API: ``serve(host, port)`` (blocking; ``hybridcam cloud local-models``) and
``start_in_thread(port) -> LocalModelServer`` with ``.url``, ``.stop()`` and ``.throttle(count, code)``.

Protocols:
- SageMaker runtime InvokeEndpoint: ``POST /endpoints/{name}/invocations``, body image/jpeg, answer
  application/json ``{"model": str, "detections": [{"label", "score" (0-1), "box": [x1, y1, x2, y2]}]}``
  in frame pixels, with Rekognition-style label names ("person" -> "Person").
- Rekognition DetectLabels (JSON 1.1): ``POST /`` with ``X-Amz-Target: RekognitionService.DetectLabels``,
  body ``{"Image": {"Bytes": base64} | {"S3Object": {"Bucket", "Name"}}, "MaxLabels", "MinConfidence"}``;
  answer ``{"Labels": [{"Name", "Confidence", "Instances": [{"BoundingBox": {"Width", "Height", "Left",
  "Top"}, "Confidence"}], "Parents", "Aliases", "Categories"}], "LabelModelVersion"}``. S3 objects are
  read with boto3 (so from moto when AWS_ENDPOINT_URL points there). Errors use the real codes:
  InvalidImageFormatException, ImageTooLargeException, InvalidS3ObjectException, InvalidParameterException.
- The super-resolution endpoint: InvokeEndpoint on an endpoint named ``super-resolution*``, body
  image/jpeg (a frame the uplink shrank), CustomAttributes ``bucket=B;key=K;factor=F``; answer image/jpeg
  at F times the size, by the camera's trained model in S3 or bicubic (cloud/super_resolution/endpoint.py).
- Rekognition Video StartLabelDetection / GetLabelDetection and StartFaceSearch / GetFaceSearch for videos
  in S3: see cloud/local/video_jobs.py.
- Rekognition face APIs (JSON 1.1, same endpoint): CreateCollection, DescribeCollection,
  DeleteCollection, ListCollections, IndexFaces, ListFaces, DeleteFaces, DetectFaces and
  SearchFacesByImage, answered by real face models (cloud/local/face_collections.py).
- Test switch: ``POST /_control/throttle {"count": N, "code": "ThrottlingException"}`` (or
  ``.throttle()``) makes the next N model calls answer that error (HTTP 400), as AWS does under load.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import cv2
import numpy as np
from botocore.exceptions import ClientError

from cloud.local.face_collections import FaceApiError, LocalFaceCollections
from cloud.local.rekognition_names import categories_of, parents_of, rekognition_name
from cloud.local.video_jobs import GET_TARGETS, START_TARGETS, VideoJobError, VideoJobs
from cloud.super_resolution.endpoint import EndpointError, SuperResolutionEndpoint

log = logging.getLogger("hybridcam.cloud.models")

SUPER_RESOLUTION_ENDPOINT_PREFIX = "super-resolution"
INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
REKOGNITION_TARGET_PREFIX = "RekognitionService."
DETECT_LABELS_TARGET = REKOGNITION_TARGET_PREFIX + "DetectLabels"
REKOGNITION_BYTES_LIMIT = 5 * 1024 * 1024
REKOGNITION_S3_LIMIT = 15 * 1024 * 1024
DEFAULT_MIN_CONFIDENCE = 55.0
LABEL_MODEL_VERSION = "hybridcam-local-1.0"


class ModelError(Exception):
    """An AWS-style error answer: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class LocalModels:
    """The detector behind both protocols, loaded once, plus the throttling switch."""

    def __init__(self, detector: str = "tiled", providers: Any = None) -> None:
        from vision.detectors import load_detector

        self.detector = load_detector(detector, providers or ["CPUExecutionProvider"])
        self._lock = threading.Lock()
        self._throttle_left = 0
        self._throttle_code = "ThrottlingException"
        self._s3: Any = None
        self._super_resolution: SuperResolutionEndpoint | None = None
        self.endpoint_calls: Counter[str] = Counter()
        self.faces = LocalFaceCollections(providers)

    @property
    def model_name(self) -> str:
        return self.detector.name

    def throttle(self, count: int, code: str = "ThrottlingException") -> None:
        with self._lock:
            self._throttle_left, self._throttle_code = max(0, count), code

    def check_throttle(self) -> None:
        with self._lock:
            if self._throttle_left > 0:
                self._throttle_left -= 1
                raise ModelError(400, self._throttle_code, "Rate exceeded")

    def detect(self, image_bytes: bytes) -> tuple[list[dict[str, Any]], int, int]:
        """Detections with Rekognition names, score 0-1 and pixel boxes; plus the image's width, height."""
        frame = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise ModelError(400, "InvalidImageFormatException", "Request has invalid image format")
        return self.detect_picture(frame), int(frame.shape[1]), int(frame.shape[0])

    def detect_picture(self, frame: np.ndarray) -> list[dict[str, Any]]:
        """Detections of a decoded BGR picture, with Rekognition names, score 0-1 and pixel boxes."""
        with self._lock:
            found = self.detector.detect(frame)
        return [
            {"label": rekognition_name(name), "score": round(float(score), 4), "box": [round(float(v), 1) for v in box]}
            for name, score, box in zip(found.labels(), found.scores, found.boxes)
        ]

    def super_resolution(self) -> SuperResolutionEndpoint:
        """The super-resolution endpoint (models read from the local S3), made on first use."""
        with self._lock:
            if self._super_resolution is None:
                self._super_resolution = SuperResolutionEndpoint(boto3.client("s3"))
            return self._super_resolution

    def s3_image(self, s3_object: dict[str, Any]) -> bytes:
        if self._s3 is None:
            self._s3 = boto3.client("s3")
        try:
            options = {"VersionId": s3_object["Version"]} if s3_object.get("Version") else {}
            body = self._s3.get_object(Bucket=s3_object["Bucket"], Key=s3_object["Name"], **options)["Body"].read()
        except (ClientError, KeyError) as error:
            raise ModelError(400, "InvalidS3ObjectException", f"Unable to get object metadata from S3: {error}") from None
        if len(body) > REKOGNITION_S3_LIMIT:
            raise ModelError(400, "ImageTooLargeException", "Image size is too large.")
        return body


def rekognition_labels(detections: list[dict[str, Any]], width: int, height: int, max_labels: int,
                       min_confidence: float) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for detection in detections:
        confidence = detection["score"] * 100.0
        if confidence < min_confidence:
            continue
        x1, y1, x2, y2 = detection["box"]
        grouped.setdefault(detection["label"], []).append({
            "BoundingBox": {"Width": (x2 - x1) / width, "Height": (y2 - y1) / height, "Left": x1 / width, "Top": y1 / height},
            "Confidence": confidence,
        })
    labels = [
        {"Name": name, "Confidence": max(i["Confidence"] for i in instances),
         "Instances": sorted(instances, key=lambda i: -i["Confidence"]), "Parents": parents_of(name),
         "Aliases": [], "Categories": categories_of(name)}
        for name, instances in grouped.items()
    ]
    labels.sort(key=lambda label: -label["Confidence"])
    return labels[:max_labels]


class LocalModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, models: LocalModels) -> None:
        super().__init__((host, port), ModelRequestHandler)
        self.models = models
        self.video_jobs = VideoJobs(models)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def throttle(self, count: int, code: str = "ThrottlingException") -> None:
        self.models.throttle(count, code)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is routine (timeouts, shutdown): one log line, no traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            log.info("client %s went away before its answer was written", client_address[0])
        else:
            super().handle_error(request, client_address)

    def start(self) -> LocalModelServer:
        self._thread = threading.Thread(target=self.serve_forever, name="local-model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ModelRequestHandler(BaseHTTPRequestHandler):
    server: LocalModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, payload: Any, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "local")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, error: ModelError, json_protocol: bool) -> None:
        if json_protocol:
            self._answer(error.status, {"__type": error.code, "Message": str(error)}, "application/x-amz-json-1.1")
        else:
            self._answer(error.status, {"message": str(error)}, headers={"x-amzn-ErrorType": error.code})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path in ("/ping", "/health"):
            self._answer(200, {"status": "ok", "model": self.server.models.model_name})
        else:
            self._answer(404, {"message": f"no such path {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        target = self.headers.get("X-Amz-Target", "")
        if match := INVOCATIONS_PATH.match(self.path):
            self._handle(lambda: self._invoke_endpoint(match.group("name"), body), json_protocol=False)
        elif self.path == "/" and target:
            self._handle(lambda: self._rekognition(target, body), json_protocol=True)
        elif self.path == "/_control/video-jobs":
            self._answer(200, self.server.video_jobs.control(json.loads(body or b"{}")))
        elif self.path == "/_control/throttle":
            request = json.loads(body or b"{}")
            self.server.throttle(int(request.get("count", 1)), str(request.get("code", "ThrottlingException")))
            self._answer(200, {"throttling": int(request.get("count", 1))})
        else:
            self._answer(404, {"message": f"no such path {self.path}"})

    def _handle(self, work: Any, json_protocol: bool) -> None:
        try:
            status, payload, content_type = work()
        except ModelError as error:
            self._error(error, json_protocol)
            return
        except Exception as error:  # a model failure answers like AWS's internal error, never kills the server
            log.exception("model call failed")
            self._error(ModelError(500, "InternalServerError", f"{type(error).__name__}: {error}"), json_protocol)
            return
        self._answer(status, payload, content_type)

    def _invoke_endpoint(self, endpoint: str, body: bytes) -> tuple[int, Any, str]:
        models = self.server.models
        models.check_throttle()
        if not body:
            raise ModelError(400, "ValidationError", "Request body is empty")
        models.endpoint_calls[endpoint] += 1
        if endpoint.startswith(SUPER_RESOLUTION_ENDPOINT_PREFIX):
            attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
            try:
                upscaled, _model = models.super_resolution().invoke(body, attributes)
            except EndpointError as error:
                raise ModelError(400, "ValidationError", str(error)) from None
            return 200, upscaled, "image/jpeg"
        detections, _, _ = models.detect(body)
        return 200, {"model": models.model_name, "endpoint": endpoint, "detections": detections}, "application/json"

    def _rekognition(self, target: str, body: bytes) -> tuple[int, Any, str]:
        if target in START_TARGETS or target in GET_TARGETS:
            return self._video_job(target, body)
        operation = target.removeprefix(REKOGNITION_TARGET_PREFIX)
        face_operation = self.server.models.faces.operations().get(operation)
        if face_operation is not None:
            return self._face_call(face_operation, body)
        if target != DETECT_LABELS_TARGET:
            raise ModelError(400, "UnknownOperationException", f"{target} is not served locally")
        models = self.server.models
        try:
            request = json.loads(body)
            image = request["Image"]
        except (ValueError, KeyError, TypeError):
            raise ModelError(400, "InvalidParameterException", "Request has no Image") from None
        image_bytes = self._image_bytes(image)
        models.check_throttle()
        detections, width, height = models.detect(image_bytes)
        labels = rekognition_labels(detections, width, height, int(request.get("MaxLabels") or 1000),
                                    float(request.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)))
        return 200, {"Labels": labels, "LabelModelVersion": LABEL_MODEL_VERSION}, "application/x-amz-json-1.1"

    def _face_call(self, operation: Any, body: bytes) -> tuple[int, Any, str]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ModelError(400, "InvalidParameterException", "Request body is not JSON") from None
        if not isinstance(request, dict):
            raise ModelError(400, "InvalidParameterException", "Request body is not a JSON object")

        def load_image() -> bytes:
            image = request.get("Image")
            if not isinstance(image, dict):
                raise ModelError(400, "InvalidParameterException", "Request has no Image")
            image_bytes = self._image_bytes(image)
            self.server.models.check_throttle()
            return image_bytes

        try:
            return 200, operation(request, load_image), "application/x-amz-json-1.1"
        except FaceApiError as error:
            raise ModelError(400, error.code, str(error)) from None

    def _image_bytes(self, image: dict[str, Any]) -> bytes:
        models = self.server.models
        if "Bytes" in image:
            try:
                image_bytes = base64.b64decode(image["Bytes"], validate=True)
            except (binascii.Error, ValueError):
                raise ModelError(400, "InvalidParameterException", "Image.Bytes is not base64") from None
            if len(image_bytes) > REKOGNITION_BYTES_LIMIT:
                raise ModelError(400, "ImageTooLargeException", "Image size is too large.")
        elif "S3Object" in image:
            image_bytes = models.s3_image(image["S3Object"])
        else:
            raise ModelError(400, "InvalidParameterException", "Image needs Bytes or S3Object")
        return image_bytes

    def _video_job(self, target: str, body: bytes) -> tuple[int, Any, str]:
        try:
            request = json.loads(body or b"{}")
            jobs = self.server.video_jobs
            answer = (jobs.start(request, START_TARGETS[target]) if target in START_TARGETS
                      else jobs.get(request, GET_TARGETS[target]))
        except ValueError:
            raise ModelError(400, "InvalidParameterException", "Request body is not JSON") from None
        except VideoJobError as error:
            raise ModelError(400, error.code, str(error)) from None
        return 200, answer, "application/x-amz-json-1.1"


def start_in_thread(port: int = 0, host: str = "127.0.0.1", detector: str = "tiled") -> LocalModelServer:
    """Load the detector and serve on a background thread; port 0 picks a free port (see .url)."""
    return LocalModelServer(host, port, LocalModels(detector)).start()


def serve(host: str = "127.0.0.1", port: int = 8070, detector: str = "tiled") -> None:
    """Serve until interrupted."""
    server = LocalModelServer(host, port, LocalModels(detector))
    print(f"local models: {server.models.detector.describe()} at {server.url}")
    print(f"  SageMaker runtime: AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={server.url} (POST /endpoints/<name>/invocations)")
    print(f"  Rekognition DetectLabels, face APIs and video jobs: AWS_ENDPOINT_URL_REKOGNITION={server.url}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
