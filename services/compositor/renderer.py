"""Draws one program picture: the chosen camera (or the director's virtual crop of it)
letterboxed into a preallocated canvas, picture-in-picture of the master, overlays (boxes,
labels, camera name, clock) and an optional binary timecode.

Per frame, pixels move once: ``cv2.resize`` writes straight into the canvas's region.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from shared.schemas import Detection

Rect = tuple[int, int, int, int]  # x, y, width, height

TIMECODE_BITS = 48
TIMECODE_BLOCK = 16
TIMECODE_PER_ROW = 24
_BOX_COLOUR = (0, 220, 255)
_FACE_COLOUR = (60, 60, 255)
_CLOUD_COLOUR = (0, 140, 255)  # orange, as the dashboard draws cloud boxes
_TEXT_COLOUR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def letterbox_rect(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Rect:
    """The largest rectangle of the source's aspect ratio centred in the destination."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w, h = max(2, round(src_w * scale)), max(2, round(src_h * scale))
    return (dst_w - w) // 2, (dst_h - h) // 2, w, h


@dataclass(frozen=True)
class RenderOptions:
    boxes: bool = True
    camera_name: bool = True
    clock: bool = True
    pip: bool = True
    timecode: bool = False


@dataclass
class ShotPicture:
    """What the renderer needs for one program frame."""

    frame: np.ndarray | None
    camera_name: str
    capture_ts: float = 0.0
    detections: list[Detection] | None = None
    detections_size: tuple[int, int] = (0, 0)  # width, height the boxes refer to
    pip_frame: np.ndarray | None = None
    note: str = ""
    crop: tuple[float, float, float, float] | None = None  # normalised part of the frame to show (virtual camera)
    boxes_predicted: bool = False  # boxes come from tracks, not from a detector run on this frame
    face_labels: list[tuple[str, tuple[float, float, float, float]]] | None = None  # text, face box in frame pixels
    track_labels: dict[int, str] | None = None  # the cloud's labels of the edge's tracks, drawn on their boxes


class ProgramRenderer:
    def __init__(self, width: int, height: int, options: RenderOptions) -> None:
        self.width, self.height = width, height
        self.options = options
        self.canvas = np.zeros((height, width, 3), dtype=np.uint8)
        self._rect_cache: dict[tuple[int, int], Rect] = {}
        self._pip_box = self._pip_rect()

    def compose(self, shot: ShotPicture, now: float | None = None) -> np.ndarray:
        if shot.frame is None:
            self.canvas[:] = 0
            self._text(shot.note or f"{shot.camera_name}: no picture", (self.width // 2 - 300, self.height // 2), 1.2)
        else:
            self._place_main(shot)
        if self.options.pip and shot.pip_frame is not None:
            self._place_pip(shot.pip_frame)
        if self.options.camera_name:
            self._text(shot.camera_name + (f"  ({shot.note})" if shot.note and shot.frame is not None else ""), (32, self.height - 36), 1.0)
        if self.options.clock:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now if now is not None else time.time()))
            self._text(stamp, (self.width - 470, 56), 0.9)
        if self.options.timecode:
            stamp_timecode(self.canvas, shot.capture_ts)
        return self.canvas

    def _place_main(self, shot: ShotPicture) -> None:
        frame = shot.frame
        assert frame is not None
        fh, fw = frame.shape[:2]
        x0, y0, x1, y1 = 0, 0, fw, fh
        if shot.crop is not None:
            cx0, cy0, cx1, cy1 = shot.crop
            x0, y0 = int(round(cx0 * fw)), int(round(cy0 * fh))
            x1, y1 = max(x0 + 2, min(fw, int(round(cx1 * fw)))), max(y0 + 2, min(fh, int(round(cy1 * fh))))
        source = frame[y0:y1, x0:x1]
        rect = self._letterbox(x1 - x0, y1 - y0)
        self._clear_bars(rect)
        x, y, w, h = rect
        cv2.resize(source, (w, h), dst=self.canvas[y : y + h, x : x + w], interpolation=cv2.INTER_LINEAR)
        if self.options.boxes and shot.detections:
            self._draw_boxes(shot, (x0, y0, x1, y1), rect)
        if shot.face_labels:
            self._draw_face_labels(shot.face_labels, (x0, y0, x1, y1), rect)

    def _draw_face_labels(self, labels: list[tuple[str, tuple[float, float, float, float]]],
                          crop: tuple[int, int, int, int], rect: Rect) -> None:
        cx0, cy0, cx1, cy1 = crop
        x, y, w, h = rect
        scale_x, scale_y = w / (cx1 - cx0), h / (cy1 - cy0)
        for text, (bx0, by0, bx1, by1) in labels:
            p0 = (int(x + (bx0 - cx0) * scale_x), int(y + (by0 - cy0) * scale_y))
            p1 = (int(x + (bx1 - cx0) * scale_x), int(y + (by1 - cy0) * scale_y))
            cv2.rectangle(self.canvas, p0, p1, _FACE_COLOUR, 2)
            cv2.putText(self.canvas, text, (p0[0], max(20, p0[1] - 8)), _FONT, 0.8, _FACE_COLOUR, 2)

    def _draw_boxes(self, shot: ShotPicture, crop: tuple[int, int, int, int], rect: Rect) -> None:
        fh, fw = shot.frame.shape[:2]  # type: ignore[union-attr]
        dw, dh = shot.detections_size
        sx_frame, sy_frame = (fw / dw, fh / dh) if dw and dh else (1.0, 1.0)
        cx0, cy0, cx1, cy1 = crop
        x, y, w, h = rect
        scale_x, scale_y = w / (cx1 - cx0), h / (cy1 - cy0)
        for detection in shot.detections or []:
            bx0, by0, bx1, by1 = detection.box
            p0 = (int(x + (bx0 * sx_frame - cx0) * scale_x), int(y + (by0 * sy_frame - cy0) * scale_y))
            p1 = (int(x + (bx1 * sx_frame - cx0) * scale_x), int(y + (by1 * sy_frame - cy0) * scale_y))
            cv2.rectangle(self.canvas, p0, p1, _BOX_COLOUR, 2)
            cloud = (shot.track_labels or {}).get(detection.track_id) if detection.track_id is not None else None
            if cloud is not None:  # what the cloud said about this object, on its edge box
                cv2.putText(self.canvas, cloud, (p0[0], max(16, p0[1] - 6)), _FONT, 0.6, _CLOUD_COLOUR, 2)
                continue
            text = detection.label if shot.boxes_predicted else f"{detection.label} {detection.score:.2f}"
            if detection.actions:  # what the person does (edge action classifier), next to the box
                text += ": " + ", ".join(name.replace("_", " ") for name in detection.actions)
            cv2.putText(self.canvas, text, (p0[0], max(16, p0[1] - 6)), _FONT, 0.6, _BOX_COLOUR, 2)

    def _place_pip(self, pip_frame: np.ndarray) -> None:
        px, py, pw, ph = self._pip_box
        fh, fw = pip_frame.shape[:2]
        x, y, w, h = letterbox_rect(fw, fh, pw, ph)
        cv2.rectangle(self.canvas, (px - 3, py - 3), (px + pw + 2, py + ph + 2), (255, 255, 255), 3)
        self.canvas[py : py + ph, px : px + pw] = 0
        cv2.resize(pip_frame, (w, h), dst=self.canvas[py + y : py + y + h, px + x : px + x + w], interpolation=cv2.INTER_AREA)

    def _pip_rect(self) -> Rect:
        pw, ph = self.width // 4, self.height // 4
        margin = max(8, self.width // 80)
        return self.width - pw - margin, self.height - ph - margin, pw, ph

    def _letterbox(self, src_w: int, src_h: int) -> Rect:
        key = (src_w, src_h)
        rect = self._rect_cache.get(key)
        if rect is None:
            if len(self._rect_cache) > 64:  # a virtual camera makes many sizes
                self._rect_cache.clear()
            rect = self._rect_cache[key] = letterbox_rect(src_w, src_h, self.width, self.height)
        return rect

    def _clear_bars(self, rect: Rect) -> None:
        x, y, w, h = rect
        if y > 0:
            self.canvas[:y] = 0
            self.canvas[y + h :] = 0
        if x > 0:
            self.canvas[:, :x] = 0
            self.canvas[:, x + w :] = 0

    def _text(self, text: str, origin: tuple[int, int], scale: float) -> None:
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 2)
        x, y = origin
        cv2.rectangle(self.canvas, (x - 8, y - th - 8), (x + tw + 8, y + base + 6), (0, 0, 0), -1)
        cv2.putText(self.canvas, text, (x, y), _FONT, scale, _TEXT_COLOUR, 2, cv2.LINE_AA)


def stamp_timecode(canvas: np.ndarray, capture_ts: float) -> None:
    """Write capture time (ms since epoch) as black/white blocks in the top-left corner."""
    value = int(round(capture_ts * 1000)) & ((1 << TIMECODE_BITS) - 1)
    b = TIMECODE_BLOCK
    for bit in range(TIMECODE_BITS):
        row, col = divmod(bit, TIMECODE_PER_ROW)
        canvas[row * b : (row + 1) * b, col * b : (col + 1) * b] = 255 if (value >> bit) & 1 else 0


def read_timecode(luma: np.ndarray) -> float:
    """Capture time (epoch seconds) read back from a decoded picture's luma plane."""
    b = TIMECODE_BLOCK
    value = 0
    for bit in range(TIMECODE_BITS):
        row, col = divmod(bit, TIMECODE_PER_ROW)
        sample = luma[row * b + b // 4 : (row + 1) * b - b // 4, col * b + b // 4 : (col + 1) * b - b // 4]
        if float(sample.mean()) > 128:
            value |= 1 << bit
    return value / 1000.0
