"""The super-resolution processor as a SageMaker-style endpoint: a shrunk JPEG in, a full-size JPEG out.

Request: body image/jpeg, and in CustomAttributes ``bucket=B;key=K;factor=F`` (where the camera's
model lies, and the factor the frame was shrunk by). The model is read from S3 and kept until its
ETag changes (checked at most every ``refresh_s``). Without a model yet, or with one of another
factor, the answer is a bicubic upscale, so the detector behind it always gets the frame's full size.
The local model server answers endpoints named ``super-resolution*`` with this class; on AWS it runs
in the endpoint's container (docs/uplink.md).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from shared.frame_ring import encode_jpeg
from shared.uplink import upscale_bicubic
from vision.super_resolution import SuperResolution

log = logging.getLogger("super_resolution.endpoint")

MAX_FACTOR = 8


class EndpointError(ValueError):
    """A request the endpoint cannot answer (bad attributes or image)."""


@dataclass
class LoadedModel:
    processor: SuperResolution
    etag: str
    checked: float


def parse_attributes(text: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs}


class SuperResolutionEndpoint:
    def __init__(self, s3: Any, refresh_s: float = 10.0, quality: int = 90) -> None:
        self.s3 = s3
        self.refresh_s = refresh_s
        self.quality = quality
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._lock = threading.Lock()

    def invoke(self, jpeg: bytes, custom_attributes: str) -> tuple[bytes, str]:
        """The upscaled JPEG and the model that made it (``bicubic`` when none could be used)."""
        attributes = parse_attributes(custom_attributes)
        try:
            factor = int(attributes.get("factor", "2"))
        except ValueError:
            raise EndpointError("factor must be a whole number") from None
        if not 1 <= factor <= MAX_FACTOR:
            raise EndpointError(f"factor must be 1-{MAX_FACTOR}")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise EndpointError("the body is not a JPEG")
        loaded = self._model(attributes.get("bucket", ""), attributes.get("key", ""))
        if loaded is not None and loaded.processor.factor == factor:
            upscaled, name = loaded.processor.upscale(image), f"sr:{loaded.etag}"
        else:
            upscaled, name = upscale_bicubic(image, image.shape[1] * factor, image.shape[0] * factor), "bicubic"
        return encode_jpeg(upscaled, self.quality), name

    def _model(self, bucket: str, key: str) -> LoadedModel | None:
        if not bucket or not key:
            return None
        now = time.monotonic()
        with self._lock:
            loaded = self._models.get((bucket, key))
            if loaded is not None and now - loaded.checked < self.refresh_s:
                return loaded
            try:
                head = self.s3.head_object(Bucket=bucket, Key=key)
                if loaded is not None and head["ETag"] == loaded.etag:
                    loaded.checked = now
                    return loaded
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                processor = SuperResolution(body)
            except Exception as error:  # noqa: BLE001 - no model yet, or a broken one: bicubic, logged
                log.info("no usable super-resolution model at s3://%s/%s (%s); bicubic", bucket, key, type(error).__name__)
                return loaded
            loaded = self._models[(bucket, key)] = LoadedModel(processor, str(head["ETag"]).strip('"'), now)
            return loaded
