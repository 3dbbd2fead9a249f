"""A contact sheet: one thumbnail per shot (its middle frame, as the program showed it) with its reason."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from services.compositor.evaluation import EvalReport, EvalShot
from shared.tracker import Box

THUMB_W, THUMB_H = 384, 216
CAPTION_H = 58
COLUMNS = 5
_FONT = cv2.FONT_HERSHEY_SIMPLEX

# (camera id, seconds into the program) -> that camera's picture then (BGR)
PictureAt = Callable[[str, float], np.ndarray | None]


def _crop(picture: np.ndarray, view: Box | None) -> np.ndarray:
    if view is None:
        return picture
    h, w = picture.shape[:2]
    x0, y0, x1, y1 = int(view[0] * w), int(view[1] * h), int(np.ceil(view[2] * w)), int(np.ceil(view[3] * h))
    return picture[max(0, y0):max(y0 + 2, y1), max(0, x0):max(x0 + 2, x1)]


def _thumbnail(picture: np.ndarray | None) -> np.ndarray:
    tile = np.zeros((THUMB_H, THUMB_W, 3), np.uint8)
    if picture is None or picture.size == 0:
        return tile
    h, w = picture.shape[:2]
    scale = min(THUMB_W / w, THUMB_H / h)
    tw, th = max(2, int(w * scale)), max(2, int(h * scale))
    x, y = (THUMB_W - tw) // 2, (THUMB_H - th) // 2
    tile[y:y + th, x:x + tw] = cv2.resize(picture, (tw, th), interpolation=cv2.INTER_AREA)
    return tile


def _caption(shot: EvalShot, number: int) -> np.ndarray:
    caption = np.full((CAPTION_H, THUMB_W, 3), 24, np.uint8)
    head = f"#{number} {shot.start:.1f}s  {shot.shot}  {shot.duration:.1f}s" + ("  FORCED" if shot.forced else "")
    cv2.putText(caption, head, (6, 18), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    for row, line in enumerate(textwrap.wrap(shot.reason, 56, max_lines=2, placeholder=" ...")):
        cv2.putText(caption, line, (6, 36 + row * 16), _FONT, 0.4, (190, 220, 255), 1, cv2.LINE_AA)
    return caption


def contact_sheet(report: EvalReport, picture_at: PictureAt, path: Path, title: str = "") -> Path:
    """Write the sheet as a PNG; each thumbnail shows the shot's middle tick with the program's crop."""
    tiles = []
    for number, shot in enumerate(report.shots, 1):
        middle = (shot.start + shot.end) / 2
        tick = min(report.ticks, key=lambda t: abs(t.t - middle)) if report.ticks else None
        picture = picture_at(shot.camera, middle)
        if picture is not None and shot.framing == "virtual" and tick is not None:
            picture = _crop(picture, tick.view)
        tiles.append(np.vstack([_thumbnail(picture), _caption(shot, number)]))
    blank = np.zeros((THUMB_H + CAPTION_H, THUMB_W, 3), np.uint8)
    while len(tiles) % COLUMNS or not tiles:
        tiles.append(blank)
    rows = [np.hstack(tiles[i:i + COLUMNS]) for i in range(0, len(tiles), COLUMNS)]
    header = np.zeros((40, THUMB_W * COLUMNS, 3), np.uint8)
    summary = (f"{title or report.name}: {len(report.shots)} shots, average {report.average_shot_s:.1f} s, "
               f"median {report.median_shot_s:.1f} s, {report.cuts_per_minute:.1f} cuts/min")
    cv2.putText(header, summary, (10, 27), _FONT, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    sheet = np.vstack([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"cannot write the contact sheet {path}")
    return path
