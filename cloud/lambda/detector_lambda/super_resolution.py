"""Restore a frame the edge shrank to fit its uplink, before the detector sees it.

The frame's record says its shrink factor (CloudFrame v2). With SUPER_RESOLUTION_ENDPOINT set, the
JPEG goes to that SageMaker endpoint with the camera's model location (the trainer's
``sr-models/<site>/<camera>.onnx`` in the frames bucket) and comes back at full size. The detector
runs on the restored picture; its boxes are scaled back to the frame as it was sent, so the result
the edge gets is in the same pixels as the record. An endpoint that fails leaves the shrunk frame
(logged): a worse detection beats none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from detector_lambda.detectors import Backoff, FoundLabel, FrameImage
from detector_lambda.logs import logger
from shared.schemas import CloudFrame


@dataclass
class Restorer:
    client: Any
    endpoint: str
    bucket: str
    model_prefix: str = "sr-models"
    backoff: Backoff = Backoff()

    def restore(self, frame: CloudFrame, image: FrameImage) -> tuple[FrameImage, int]:
        """The picture to detect on and the factor its boxes must be divided by."""
        if frame.shrink_factor <= 1 or image.jpeg is None:
            return image, 1
        attributes = (f"bucket={self.bucket};key={self.model_prefix}/{frame.site}/{frame.camera_id}.onnx;"
                      f"factor={frame.shrink_factor}")
        try:
            response = self.backoff.call("InvokeEndpoint", lambda: self.client.invoke_endpoint(
                EndpointName=self.endpoint, ContentType="image/jpeg", Accept="image/jpeg",
                CustomAttributes=attributes, Body=image.jpeg))
            jpeg = response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            logger.warning("super-resolution endpoint %s failed (%s); detecting on the shrunk frame", self.endpoint, error)
            return image, 1
        factor = frame.shrink_factor
        return FrameImage(image.width * factor, image.height * factor, jpeg=jpeg), factor


def scaled_back(labels: list[FoundLabel], factor: int) -> list[FoundLabel]:
    if factor == 1:
        return labels
    return [replace(label, box=tuple(v / factor for v in label.box)) if label.box else label  # type: ignore[arg-type]
            for label in labels]
