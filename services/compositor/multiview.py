"""The multiview: every camera in one 1920x1080 picture, the wide master larger, the on-air camera marked.

Layout by camera count: one camera fills the picture; up to six use a 3x3 grid whose top-left
2x2 block is the wide master; up to thirteen a 4x4 grid the same way. A free cell shows the
program itself. Cell rectangles are computed once; each picture resizes every camera once,
straight into its cell.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.compositor.renderer import Rect, letterbox_rect

_ON_AIR = (0, 0, 230)
_FRAME = (90, 90, 90)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
PROGRAM_CELL = "program"


def grid_cells(count: int, width: int, height: int) -> list[Rect]:
    """Cells for ``count`` pictures; the first (the master) spans 2x2 cells when there is more than one."""
    if count <= 1:
        return [(0, 0, width, height)]
    side = 3 if count <= 6 else 4
    if count > side * side - 3:
        raise ValueError(f"a multiview holds at most 13 pictures, not {count}")
    cw, ch = width // side, height // side
    cells: list[Rect] = [(0, 0, 2 * cw, 2 * ch)]
    for row in range(side):
        for col in range(side):
            if row < 2 and col < 2:
                continue
            cells.append((col * cw, row * ch, cw, ch))
    return cells[:count]


class MultiviewRenderer:
    def __init__(self, width: int, height: int, camera_ids: list[str], master_id: str, names: dict[str, str] | None = None) -> None:
        self.width, self.height = width, height
        ordered = [master_id] + [c for c in camera_ids if c != master_id]
        capacity = 1 if len(ordered) == 1 else 6 if len(ordered) <= 6 else 13
        self.slots = ordered + ([PROGRAM_CELL] if 1 < len(ordered) < capacity else [])
        self.cells = dict(zip(self.slots, grid_cells(len(self.slots), width, height)))
        self.names = names or {}
        self.canvas = np.zeros((height, width, 3), np.uint8)
        self._fits: dict[tuple[str, int, int], Rect] = {}
        self._shapes: dict[str, tuple[int, ...] | None] = {}

    def compose(self, frames: dict[str, np.ndarray | None], on_air: str | None, program: np.ndarray | None = None) -> np.ndarray:
        """Every camera and the program placed, then the borders and names: one whole picture."""
        for slot in self.cells:
            self.place(slot, program if slot == PROGRAM_CELL else frames.get(slot))
        return self.finish(on_air)

    def place(self, slot: str, picture: np.ndarray | None) -> None:
        """Resize one picture straight into its cell (a cell not placed again keeps its last picture)."""
        x, y, w, h = self.cells[slot]
        shape = None if picture is None else picture.shape[:2]
        if shape is None or self._shapes.get(slot) != shape:
            self.canvas[y:y + h, x:x + w] = 0
            self._shapes[slot] = shape
        if picture is None:
            return
        fh, fw = picture.shape[:2]
        key = (slot, fw, fh)
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = letterbox_rect(fw, fh, w - 4, h - 4)
        fx, fy, fw2, fh2 = fit
        cv2.resize(picture, (fw2, fh2), dst=self.canvas[y + 2 + fy: y + 2 + fy + fh2, x + 2 + fx: x + 2 + fx + fw2],
                   interpolation=cv2.INTER_LINEAR)

    def finish(self, on_air: str | None) -> np.ndarray:
        """Borders (the on-air camera's red) and names over the cells; returns the picture."""
        for slot, (x, y, w, h) in self.cells.items():
            live = slot == on_air
            cv2.rectangle(self.canvas, (x + 1, y + 1), (x + w - 2, y + h - 2), _FRAME, 6)  # wipes a previous on-air border
            if live:
                cv2.rectangle(self.canvas, (x + 1, y + 1), (x + w - 2, y + h - 2), _ON_AIR, 6)
            label = "PGM" if slot == PROGRAM_CELL else self.names.get(slot, slot)
            self._label(label + ("  ON AIR" if live else ""), x + 10, y + h - 14, live)
        return self.canvas

    def _label(self, text: str, x: int, y: int, live: bool) -> None:
        (tw, th), base = cv2.getTextSize(text, _FONT, 0.7, 2)
        cv2.rectangle(self.canvas, (x - 6, y - th - 6), (x + tw + 6, y + base + 4), _ON_AIR if live else (0, 0, 0), -1)
        cv2.putText(self.canvas, text, (x, y), _FONT, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
