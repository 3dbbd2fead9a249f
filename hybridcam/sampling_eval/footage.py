"""Frames of recorded footage: a video file, or the built-in synthetic walkthrough (`synthetic:walkthrough`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_FPS = 10.0
SYNTHETIC_SIZE = (960, 540)
SYNTHETIC_START_S = 40.0  # so the clip holds the group leaving, the empty stretch and its return


class FootageError(ValueError):
    """Footage that cannot be read; the message is one sentence for the user."""


@dataclass(frozen=True)
class Footage:
    """Where frames come from, with what is known before decoding."""

    source: str
    name: str
    fps: float
    frame_count: int
    width: int
    height: int
    fingerprint: str
    declared_count: int = 0
    """the frame count the container declared, where the file delivered another number (0: they agreed)"""
    delivered: list[int] = field(default_factory=list, compare=False, repr=False)
    """set by frames() once the file is read to its end: how many frames it delivered"""

    @property
    def synthetic(self) -> bool:
        return self.source.startswith(SYNTHETIC_PREFIX)

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame the file delivers, in order (BGR), however many its container declared; read to the end,
        ``delivered`` holds the count. A file that delivers no frame raises FootageError."""
        if self.synthetic:
            yield from _synthetic_frames(self)
            self.delivered[:] = [self.frame_count]
            return
        capture = cv2.VideoCapture(self.source)
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield frame
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise FootageError(f"{self.source}: no frame could be decoded (is it a video file?)")
        self.delivered[:] = [index]

    def as_delivered(self, count: int) -> Footage:
        """This footage with the frame count the file actually delivered (the container's kept as ``declared_count``)."""
        if count == self.frame_count:
            return self
        return replace(self, frame_count=count, declared_count=self.declared_count or self.frame_count, delivered=[count])

    def count_note(self) -> str:
        """One sentence when the container's frame count was wrong, else empty."""
        if not self.declared_count or self.declared_count == self.frame_count:
            return ""
        return (f"{self.name}: the container says {self.declared_count} frames, the file delivers {self.frame_count}; "
                f"using the {self.frame_count} it delivers")


def ground_truth_people(footage: Footage) -> list[list[tuple[int, tuple[float, float, float, float]]]] | None:
    """For the synthetic scene, who is where in every frame (person id, box in pixels); None for a recording."""
    if not footage.synthetic:
        return None
    from services.capture.synthetic_scene import SyntheticScene

    scene = SyntheticScene.default_site(width=footage.width, height=footage.height,
                                        scenario=footage.source[len(SYNTHETIC_PREFIX):] or "walkthrough")
    master = next(iter(scene.cameras))
    return [[(person.person_id, person.box) for person in scene.ground_truth(master, SYNTHETIC_START_S + index / footage.fps)]
            for index in range(footage.frame_count)]


def open_footage(source: str) -> Footage:
    if source.startswith(SYNTHETIC_PREFIX):
        return _synthetic_footage(source)
    path = Path(source)
    if not path.is_file():
        raise FootageError(f"{source}: no such file")
    fps, count, width, height = _probe(path)
    return Footage(str(path), path.stem, fps, count, width, height, _file_fingerprint(path))


def _probe(path: Path) -> tuple[float, int, int, int]:
    """Frame rate, frame count and size from the container (PyAV: no FFmpeg chatter on stderr)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FootageError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            count = int(stream.frames or 0)
            if count <= 0 and stream.duration and stream.time_base:
                count = int(round(float(stream.duration * stream.time_base) * fps))
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except av.FFmpegError:
        raise FootageError(f"{path}: not a video file OpenCV/FFmpeg can decode") from None
    if fps <= 0 or count <= 0 or width <= 0:
        raise FootageError(f"{path}: the video does not say its frame rate, length or size")
    return fps, count, width, height


def _file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _synthetic_footage(source: str) -> Footage:
    from services.capture.synthetic_scene import SCENARIOS, SyntheticScene

    scenario = source[len(SYNTHETIC_PREFIX):] or "walkthrough"
    if scenario not in SCENARIOS:
        raise FootageError(f"{source}: unknown synthetic scenario; choose synthetic:{' or synthetic:'.join(SCENARIOS)}")
    scene = SyntheticScene.default_site(width=SYNTHETIC_SIZE[0], height=SYNTHETIC_SIZE[1], scenario=scenario)
    duration = scene.walkthrough_period or 60.0
    count = int(duration * SYNTHETIC_FPS)
    fingerprint = f"{scenario}-{scene.seed}-{SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]}-{SYNTHETIC_START_S:g}-{count}"
    return Footage(source, f"synthetic-{scenario}", SYNTHETIC_FPS, count, *SYNTHETIC_SIZE, fingerprint)


def _synthetic_frames(footage: Footage) -> Iterator[np.ndarray]:
    from services.capture.synthetic_scene import SyntheticScene

    scene = SyntheticScene.default_site(width=footage.width, height=footage.height,
                                        scenario=footage.source[len(SYNTHETIC_PREFIX):] or "walkthrough")
    master = next(iter(scene.cameras))
    for index in range(footage.frame_count):
        yield scene.render(master, SYNTHETIC_START_S + index / footage.fps)
