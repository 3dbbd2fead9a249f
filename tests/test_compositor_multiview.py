"""The multiview layout: every camera in one picture, the wide master larger, the on-air camera marked."""

from __future__ import annotations

import numpy as np
import pytest

from services.compositor.multiview import PROGRAM_CELL, MultiviewRenderer, grid_cells


def test_six_cameras_fill_a_3x3_grid_with_the_master_on_2x2() -> None:
    cells = grid_cells(6, 1920, 1080)
    assert cells[0] == (0, 0, 1280, 720)
    assert all(w == 640 and h == 360 for _, _, w, h in cells[1:])
    assert len({(x, y) for x, y, _, _ in cells}) == 6


def test_fewer_cameras_leave_a_cell_for_the_program_and_more_use_4x4() -> None:
    renderer = MultiviewRenderer(1920, 1080, ["wide", "a", "b"], "wide")
    assert renderer.slots == ["wide", "a", "b", PROGRAM_CELL]
    assert len(grid_cells(9, 1920, 1080)) == 9 and grid_cells(9, 1920, 1080)[0] == (0, 0, 960, 540)
    with pytest.raises(ValueError):
        grid_cells(14, 1920, 1080)


def test_each_camera_lands_in_its_cell_and_the_on_air_one_is_marked_red() -> None:
    ids = ["wide", "a", "b", "c", "d", "e"]
    renderer = MultiviewRenderer(1920, 1080, ids, "wide")
    frames = {cid: np.full((360, 640, 3), 40 * (i + 1), np.uint8) for i, cid in enumerate(ids)}
    canvas = renderer.compose(frames, on_air="c")
    for cid in ids:
        x, y, w, h = renderer.cells[cid]
        centre = canvas[y + h // 2 - 5: y + h // 2 + 5, x + w // 2 - 5: x + w // 2 + 5]
        assert (centre == frames[cid][0, 0]).all(), cid
    x, y, w, h = renderer.cells["c"]
    border = canvas[y + 2, x + w // 2]
    assert border[2] > 200 and border[0] < 50, "the on-air cell has a red border"
    x, y, w, h = renderer.cells["a"]
    assert canvas[y + 2, x + w // 2][2] < 200, "other cells do not"
