"""Per-frame detections of the edge detector and the cloud-tier reference detector, cached on disk.

Running the reference (CenterNet + NanoDet tiles) on every frame takes a few hundred milliseconds a
frame on a CPU, so results are written as they are computed (a stopped run resumes) to
``.hybridcam/sampling-cache/<video stem>.detections.json.gz`` (or the folder given); a cache that
already lies beside the video (the repository's clips carry theirs) is used and kept there. Nothing
new is written beside a video: its folder may be somebody else's, and permission bits do not stop root. Replaying policies
then only decodes the video for the change features.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridcam.sampling_eval.footage import Footage

CACHE_VERSION = 1
DEFAULT_CACHE_DIR = Path(".hybridcam/sampling-cache")
CHECKPOINT_FRAMES = 50
# One detection as stored: label, score, x1, y1, x2, y2 (frame pixels).
StoredDetection = tuple[str, float, float, float, float, float]


@dataclass(frozen=True)
class DetectorChoice:
    edge_model: str = "nanodet"
    edge_score_threshold: float = 0.35
    reference_model: str = "tiled"
    threads: int = 0
    stride: int = 1
    """run both detectors on every stride-th frame only (high-rate footage on a small machine): the
    frames between repeat the reference's last result, and the edge's tracker carries its boxes;
    0 = the stride of the cached results, 1 when there are none"""

    def key(self) -> dict[str, Any]:
        key: dict[str, Any] = {"edge_model": self.edge_model, "edge_score_threshold": self.edge_score_threshold,
                               "reference_model": self.reference_model}
        return key | ({"stride": self.stride} if self.stride > 1 else {})


@dataclass
class FrameResults:
    """Both detectors' findings on every frame of one piece of footage."""

    footage: dict[str, Any]
    detectors: dict[str, Any]
    edge: list[list[StoredDetection]] = field(default_factory=list)
    reference: list[list[StoredDetection]] = field(default_factory=list)

    @property
    def stride(self) -> int:
        """the detectors ran on every stride-th frame (see DetectorChoice.stride)"""
        return int(self.detectors.get("stride", 1))

    @property
    def complete(self) -> bool:
        return len(self.reference) >= int(self.footage["frame_count"])

    @property
    def delivered_frames(self) -> int | None:
        """Frames the file delivered, where that differs from what its container declared (known once read to the end)."""
        value = self.footage.get("delivered_frames")
        return None if value is None else int(value)

    def to_json(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "footage": self.footage, "detectors": self.detectors,
                "edge": self.edge, "reference": self.reference}


def cache_path(footage: Footage, cache_dir: Path | None) -> Path:
    name = f"{footage.name}.detections.json.gz"
    if cache_dir is not None:
        return cache_dir / name
    beside = Path(footage.source).with_name(name)
    if not footage.synthetic and beside.is_file():
        return beside
    return DEFAULT_CACHE_DIR / name


def footage_key(footage: Footage) -> dict[str, Any]:
    return {"name": footage.name, "fingerprint": footage.fingerprint, "fps": footage.fps,
            "frame_count": footage.frame_count, "width": footage.width, "height": footage.height}


def load_cached(path: Path, footage: Footage, choice: DetectorChoice) -> FrameResults | None:
    """The cached results if they belong to this footage and these detectors (possibly partial)."""
    try:
        with gzip.open(path, "rt") as stream:
            data = json.load(stream)
    except (OSError, ValueError, EOFError):
        return None
    if data.get("version") != CACHE_VERSION or not _same_detectors(data.get("detectors"), choice):
        return None
    if data.get("footage", {}).get("fingerprint") != footage.fingerprint:
        return None
    edge = [[tuple(d) for d in frame] for frame in data["edge"]]
    reference = [[tuple(d) for d in frame] for frame in data["reference"]]
    key = footage_key(footage)
    delivered = data["footage"].get("delivered_frames")
    if delivered is not None:  # an earlier run read the file to its end: its count, not the container's, is the length
        key.update(frame_count=int(delivered), delivered_frames=int(delivered))
    return FrameResults(key, data["detectors"], edge, reference)  # type: ignore[arg-type]


def _same_detectors(cached: Any, choice: DetectorChoice) -> bool:
    if choice.stride > 0:
        return bool(cached == choice.key())
    return isinstance(cached, dict) and {k: v for k, v in cached.items() if k != "stride"} == DetectorChoice(
        choice.edge_model, choice.edge_score_threshold, choice.reference_model).key()


def save(path: Path, results: FrameResults) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with gzip.open(temporary, "wt", compresslevel=9) as stream:
        json.dump(results.to_json(), stream, separators=(",", ":"))
    os.replace(temporary, path)


def stored(found: Any, decimals: int = 1) -> list[StoredDetection]:
    return [(label, round(float(score), 3), *(round(float(v), decimals) for v in box))
            for label, score, box in zip(found.labels(), found.scores, found.boxes, strict=True)]


def frame_results(footage: Footage, choice: DetectorChoice, cache_dir: Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FrameResults:
    """Load, resume or compute both detectors' results on every frame of the footage."""
    path = cache_path(footage, cache_dir)
    results = load_cached(path, footage, choice) or FrameResults(footage_key(footage), choice.key())
    if results.complete:
        return results
    stride = results.stride if choice.stride == 0 else choice.stride
    from vision.detectors import load_detector

    threads = choice.threads or None
    edge = load_detector(choice.edge_model, ["CPUExecutionProvider"], intra_op_num_threads=threads,
                         score_threshold=choice.edge_score_threshold)
    reference = load_detector(choice.reference_model, ["CPUExecutionProvider"], intra_op_num_threads=threads)
    done = len(results.reference)
    results.edge = results.edge[:done]
    try:
        for index, frame in enumerate(footage.frames()):
            if index < done:
                continue
            if index % stride == 0 or not results.reference:
                results.edge.append(stored(edge.detect(frame)))
                results.reference.append(stored(reference.detect(frame)))
            else:  # between analysed frames: the reference's last result; the edge did not run
                results.edge.append([])
                results.reference.append(results.reference[-1])
            if progress:
                progress(index + 1, footage.frame_count)
            if (index + 1) % CHECKPOINT_FRAMES == 0:
                save(path, results)
    finally:
        if footage.delivered and footage.delivered[0] != footage.frame_count:
            results.footage.update(frame_count=footage.delivered[0], delivered_frames=footage.delivered[0])
        save(path, results)  # whatever was computed is kept, even when decoding failed part way
    return results
