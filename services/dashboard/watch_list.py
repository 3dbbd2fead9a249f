"""Watch-list hits (FaceMatches from the face_matches stream) as the page's watch-list panel shows them.

One view per matched face: person, camera, capture time, similarity, whether it raised the alert,
and the small face crop as a data URL (a few KB; the edge keeps it only in this bounded list and
the bounded stream, never a face template).
"""

from __future__ import annotations

import base64
from typing import Any

from shared.schemas import FaceMatches


def hit_views(message: FaceMatches) -> list[dict[str, Any]]:
    return [
        {
            "person": match.person, "camera_id": message.camera_id, "frame_id": message.frame_id,
            "capture_ts": message.capture_ts, "similarity": round(match.similarity, 1),
            "alerted": match.person in message.alerts, "box": [round(v, 1) for v in match.box],
            "crop": f"data:image/jpeg;base64,{base64.b64encode(match.crop_jpeg).decode('ascii')}" if match.crop_jpeg else "",
        }
        for match in message.matches
    ]
