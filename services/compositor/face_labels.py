"""Names of watch-list hits on the program (HYBRIDCAM_COMPOSITOR_FACE_LABELS, off by default).

Hits come from the face_matches stream well after their frame was shown (the cloud path takes
seconds), so a hit labels its camera's picture for ``hold_s`` seconds after it arrived, at the face
box it was found at, in the camera's pixels. Only the name and similarity are drawn.
"""

from __future__ import annotations

import queue
from collections import defaultdict, deque

from shared.schemas import FaceMatches

Label = tuple[str, tuple[float, float, float, float]]


class FaceLabels:
    def __init__(self, hold_s: float = 4.0, per_camera: int = 8) -> None:
        self.hold_s = hold_s
        self.recent: dict[str, deque[tuple[float, Label]]] = defaultdict(lambda: deque(maxlen=per_camera))

    def take(self, arrivals: queue.SimpleQueue[tuple[FaceMatches, float]]) -> None:
        while True:
            try:
                message, arrived = arrivals.get_nowait()
            except queue.Empty:
                return
            for match in message.matches:
                self.recent[message.camera_id].append((arrived, (f"{match.person} {match.similarity:.0f}%", match.box)))

    def for_camera(self, camera_id: str, now: float) -> list[Label]:
        return [label for arrived, label in self.recent.get(camera_id, ()) if now - arrived <= self.hold_s]
