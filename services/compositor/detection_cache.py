"""Edge detections on every frame of a recorded rig, computed once and cached as JSON.

One cache file per clip and model holds every camera of every rig that was evaluated on it,
keyed by the camera's crop and size, so a rig change only runs the detector on new cameras.
The cache also records the clip's size and a hash of its first megabyte: a different file
under the same name is detected again, never mixed up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from services.compositor.recorded_rig import camera_frames, parse_file_source
from shared.schemas import Detection, DetectionSet
from shared.site_config import ResolvedCamera

log = logging.getLogger(__name__)
FORMAT = 1


@dataclass(frozen=True)
class FrameDetections:
    index: int
    detections: list[Detection]


def clip_fingerprint(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    return f"{path.stat().st_size}-{hashlib.sha256(head).hexdigest()[:16]}"


def camera_key(camera: ResolvedCamera) -> str:
    source = parse_file_source(camera.source)
    crop = source.crop
    where = "full" if crop is None else f"{crop.x0:g},{crop.y0:g},{crop.x1:g},{crop.y1:g}"
    return f"{where}@{camera.width}x{camera.height}"


def cache_path(clip: Path, model: str, folder: Path | None = None) -> Path:
    return (folder or clip.parent) / f"{clip.stem}.detections.{model}.json"


def _encode(detections: list[Detection]) -> list[list]:
    return [[d.label, round(d.score, 3), *(round(v, 1) for v in d.box)] for d in detections]


def _decode(rows: list[list]) -> list[Detection]:
    return [Detection(label=r[0], score=r[1], box=(r[2], r[3], r[4], r[5])) for r in rows]


class DetectionCache:
    def __init__(self, path: Path, clip: Path, model: str) -> None:
        self.path = path
        self.clip = clip
        self.model = model
        self.fingerprint = clip_fingerprint(clip)
        self.cameras: dict[str, list[list[list]]] = {}
        if path.exists():
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                log.warning("detection cache %s unreadable (%s): detecting again", path, error)
                return
            if document.get("format") == FORMAT and document.get("clip") == self.fingerprint and document.get("model") == model:
                self.cameras = document.get("cameras", {})
            else:
                log.warning("detection cache %s belongs to another clip or model: detecting again", path)

    def has(self, camera: ResolvedCamera) -> bool:
        return camera_key(camera) in self.cameras

    def frames(self, camera: ResolvedCamera) -> list[list[Detection]]:
        return [_decode(rows) for rows in self.cameras[camera_key(camera)]]

    def store(self, camera: ResolvedCamera, per_frame: list[list[Detection]]) -> None:
        self.cameras[camera_key(camera)] = [_encode(d) for d in per_frame]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": FORMAT, "clip": self.fingerprint, "clip_name": self.clip.name, "model": self.model, "cameras": self.cameras}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        temporary.replace(self.path)


def detect_every_frame(camera: ResolvedCamera, detector, labels: frozenset[str], limit: int = 0, progress=None) -> list[list[Detection]]:
    """Run the detector on every frame the camera shows; keep only the labels asked for."""
    per_frame: list[list[Detection]] = []
    started = time.monotonic()
    for index, frame in enumerate(camera_frames(camera, limit)):
        found = detector.detect(frame)
        names = found.labels()
        per_frame.append([
            Detection(label=name, class_id=int(cid), score=float(score), box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            for name, cid, score, box in zip(names, found.class_ids, found.scores, found.boxes)
            if name in labels
        ])
        if progress is not None and index % 50 == 0:
            progress(camera.id, index, time.monotonic() - started)
    return per_frame


def detection_sets(camera: ResolvedCamera, per_frame: list[list[Detection]], start_ts: float, fps: float, model: str) -> list[DetectionSet]:
    """The cached detections as the detection stream would have carried them (frame i at start + i / fps)."""
    return [
        DetectionSet(camera_id=camera.id, seq=i, frame_id=f"{camera.id}-{i}", capture_ts=start_ts + i / fps, width=camera.width,
                     height=camera.height, source="edge", model=model, provider="cache", latency_ms=0.0, detections=detections)
        for i, detections in enumerate(per_frame)
    ]
