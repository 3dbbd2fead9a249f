"""Watch-list hits from the cloud (FaceMatches messages on the results queue) onto the edge's face_matches stream.

Face boxes are rescaled to the camera's own pixels (the sampler may have sent a smaller JPEG), like
cloud detections. A frame's hits are published once (its own dedup key, beside the frame's
CloudResult key), so a message SQS delivers twice reaches the stream once.
"""

from __future__ import annotations

from shared.schemas import FaceMatch, FaceMatches
from shared.site_config import ResolvedCamera

FACE_DEDUP_SUFFIX = "#faces"


def dedup_id(message: FaceMatches) -> str:
    return f"{message.frame_id}{FACE_DEDUP_SUFFIX}"


def in_camera_pixels(message: FaceMatches, camera: ResolvedCamera | None) -> FaceMatches:
    if camera is None or (camera.width, camera.height) == (message.width, message.height):
        return message
    sx, sy = camera.width / message.width, camera.height / message.height
    matches = [
        FaceMatch(person=m.person, face_id=m.face_id, similarity=m.similarity, crop_jpeg=m.crop_jpeg,
                  box=(m.box[0] * sx, m.box[1] * sy, m.box[2] * sx, m.box[3] * sy))
        for m in message.matches
    ]
    return message.model_copy(update={"matches": matches, "width": camera.width, "height": camera.height})
