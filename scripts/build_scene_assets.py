#!/usr/bin/env python3
"""Rebuild the synthetic scene's assets (services/capture/scene_assets/) from the real photos in tests/data.

What it writes and why:

* ``person_*.png`` -- people cut out of real photos, BGRA with a soft alpha edge, cropped tight to the person.
  Each person is located by the NanoDet COCO detector (models/nanodet.onnx); the detection overlapping a hand-set
  rectangle is used, and the rectangle itself is the fallback if the detector misses. ``cv2.grabCut`` is started from
  that box, helped by a few hand-set definite-foreground / definite-background strokes where grabCut alone gets it
  wrong (the man's brown boots look like the dry grass around them; wet sand shows between a walker's legs).
  Only full-body people taller than ~140 px in their photo are used: smaller ones turn to mush when the slave
  cameras zoom in. That leaves three people: the man in the blue jacket (person.jpg) and the two hooded walkers on the
  beach (kite.jpg). The scene adds variety at run time (mirroring, jacket re-colouring, height jitter).
* ``background.jpg`` -- a people-free real background: the beach/lake part of kite.jpg (x 0..1120, y 270..900, a
  16:9 crop with the horizon near the top so most of the world is ground), with every detection (people, and the
  kites: NanoDet calls the red one a person), the two cut-out walkers and their reflections filled by an exemplar
  fill: each hole gets the nearby hole-free patch whose surrounding ring matches best, colour-matched to the ring and
  feathered in (cv2.inpaint smears person-sized holes into pale ghosts). It is stored at photo resolution; the
  scene resizes each camera's view of it once at start, which keeps the committed file small (~200 KB).

Photos not used: astronaut.png shows no legs; dog.jpg and horses.jpg hold no person big enough to cut out.

Run from the repository root:  python scripts/build_scene_assets.py
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = REPO_ROOT / "tests" / "data"
MODEL = REPO_ROOT / "models" / "nanodet.onnx"
ASSETS = REPO_ROOT / "services" / "capture" / "scene_assets"

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in photo pixels

BACKGROUND_PHOTO = "kite.jpg"
BACKGROUND_CROP: Rect = (0, 270, 1120, 900)
# Reflections / shadows of the two walkers on the wet sand and two far kite-surfers only a few pixels tall, which
# the detector does not report.
BACKGROUND_EXTRA_HOLES: tuple[Rect, ...] = (
    (112, 770, 156, 808),
    (214, 840, 262, 880),
    (458, 473, 473, 489),
    (693, 459, 706, 473),
)
BACKGROUND_DETECTION_THRESHOLD = 0.1  # low on purpose: a false hole costs nothing, a missed person stays in the scene
BACKGROUND_JPEG_QUALITY = 90


@dataclass(frozen=True)
class SpriteSource:
    name: str
    photo: str
    rect: Rect
    definite_foreground: tuple[Rect, ...] = field(default_factory=tuple)
    definite_background: tuple[Rect, ...] = field(default_factory=tuple)


SPRITES: tuple[SpriteSource, ...] = (
    SpriteSource(
        "person_blue_jacket",
        "person.jpg",
        (187, 100, 279, 376),
        definite_foreground=((212, 318, 221, 368), (226, 318, 240, 370), (215, 260, 245, 320)),
    ),
    SpriteSource(
        "person_navy_hoodie",
        "kite.jpg",
        (212, 700, 273, 854),
        definite_background=((243, 810, 250, 836),),
    ),
    SpriteSource("person_teal_hoodie", "kite.jpg", (111, 614, 168, 760)),
)

NANODET_MEAN = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD = np.array([57.375, 57.12, 58.395], np.float32)
NANODET_SIZE = 416
NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11
PERSON_CLASS = 0


def detect_people(session: ort.InferenceSession, image: np.ndarray, threshold: float = 0.25) -> list[Rect]:
    """Minimal NanoDet decode (person class only); enough to place grabCut rectangles."""
    height, width = image.shape[:2]
    blob = (cv2.resize(image, (NANODET_SIZE, NANODET_SIZE)).astype(np.float32) - NANODET_MEAN) / NANODET_STD
    outputs = session.run(None, {session.get_inputs()[0].name: blob.transpose(2, 0, 1)[None]})
    by_cells: dict[int, dict[int, np.ndarray]] = {}
    for output in outputs:
        by_cells.setdefault(output.shape[1], {})[output.shape[2]] = output[0]
    boxes, scores = [], []
    for stride in NANODET_STRIDES:
        grid = NANODET_SIZE // stride
        cells = by_cells[grid * grid]
        score = cells[80][:, PERSON_CLASS]
        keep = np.nonzero(score > threshold)[0]
        if keep.size == 0:
            continue
        logits = cells[4 * NANODET_BINS][keep].reshape(-1, 4, NANODET_BINS)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        dist = (probs * np.arange(NANODET_BINS)).sum(-1) * stride
        cx, cy = (keep % grid + 0.5) * stride, (keep // grid + 0.5) * stride
        boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        scores.append(score[keep])
    if not boxes:
        return []
    all_boxes = np.concatenate(boxes) * np.array([width, height, width, height]) / NANODET_SIZE
    all_scores = np.concatenate(scores)
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in all_boxes]
    kept = np.array(cv2.dnn.NMSBoxes(xywh, all_scores.tolist(), threshold, 0.5)).reshape(-1)
    return [tuple(int(round(v)) for v in all_boxes[i]) for i in kept]  # type: ignore[misc]


def iou(a: Rect, b: Rect) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def locate(source: SpriteSource, detections: list[Rect]) -> Rect:
    best = max(detections, key=lambda box: iou(box, source.rect), default=None)
    if best is not None and iou(best, source.rect) > 0.5:
        return best
    print(f"  {source.name}: detector missed, using the hand-set rectangle")
    return source.rect


def grabcut_person(image: np.ndarray, box: Rect, source: SpriteSource) -> np.ndarray:
    """Binary (0/1) person mask: the sizeable foreground blobs grabCut finds around the box."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = int(0.15 * (x2 - x1)) + 2, int(0.06 * (y2 - y1)) + 2
    mask = np.full((height, width), cv2.GC_BGD, np.uint8)
    mask[max(0, y1 - pad_y) : min(height, y2 + pad_y), max(0, x1 - pad_x) : min(width, x2 + pad_x)] = cv2.GC_PR_BGD
    mask[y1:y2, x1:x2] = cv2.GC_PR_FGD
    for fx1, fy1, fx2, fy2 in source.definite_foreground:
        mask[fy1:fy2, fx1:fx2] = cv2.GC_FGD
    for bx1, by1, bx2, by2 in source.definite_background:
        mask[by1:by2, bx1:bx2] = cv2.GC_BGD
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(image, mask, None, background_model, foreground_model, 10, cv2.GC_INIT_WITH_MASK)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count > 1:  # drop specks, keep body parts grabCut separated (e.g. boots below the trousers)
        areas = stats[1:, cv2.CC_STAT_AREA]
        foreground = np.isin(labels, 1 + np.nonzero(areas >= 0.05 * areas.max())[0]).astype(np.uint8)
    return foreground


def sprite_from_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BGRA crop with a slightly feathered alpha, tight around the mask."""
    ys, xs = np.nonzero(mask)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.7)
    alpha[mask > 0] = np.maximum(alpha[mask > 0], 0.5)  # feather outwards only a little
    alpha_u8 = np.clip(alpha * 255.0, 0, 255).astype(np.uint8)[y1:y2, x1:x2]
    return np.dstack([image[y1:y2, x1:x2], alpha_u8])


def fill_from_nearby_patch(image: np.ndarray, hole: np.ndarray, unfilled: np.ndarray, margin: int = 16,
                           reach: int = 220) -> bool:
    """Exemplar fill of one hole: copy the nearby patch whose surrounding ring matches best (masked SSD).

    cv2.inpaint smears person-sized holes into pale ghosts; copying real sand/surf texture from beside the hole
    looks like the photo. The source patch may not touch any hole that is still unfilled; its colour is shifted to
    the ring's mean and it is blended in with an outward feather.
    """
    height, width = hole.shape
    ys, xs = np.nonzero(hole)
    x1, y1 = max(0, xs.min() - margin), max(0, ys.min() - margin)
    x2, y2 = min(width, xs.max() + 1 + margin), min(height, ys.max() + 1 + margin)
    sx1, sy1 = max(0, x1 - reach), max(0, y1 - reach)
    sx2, sy2 = min(width, x2 + reach), min(height, y2 + reach)
    template = image[y1:y2, x1:x2].astype(np.float32)
    ring = (1 - unfilled[y1:y2, x1:x2]).astype(np.float32)
    search = image[sy1:sy2, sx1:sx2].astype(np.float32)
    cost = cv2.matchTemplate(search, template, cv2.TM_SQDIFF, mask=cv2.merge([ring] * 3))
    blocked = cv2.matchTemplate(unfilled[sy1:sy2, sx1:sx2].astype(np.float32), np.ones_like(ring), cv2.TM_CCORR)
    cost[(blocked > 0.5) | ~np.isfinite(cost)] = np.inf
    if not np.isfinite(cost).any():
        return False
    best_y, best_x = np.unravel_index(int(np.argmin(cost)), cost.shape)
    source = image[sy1 + best_y : sy1 + best_y + (y2 - y1), sx1 + best_x : sx1 + best_x + (x2 - x1)].astype(np.float32)
    ring_pixels = ring > 0
    source += template[ring_pixels].mean(0) - source[ring_pixels].mean(0)
    inside = hole[y1:y2, x1:x2].astype(np.float32)
    feather = cv2.GaussianBlur(cv2.dilate(inside, np.ones((7, 7), np.uint8)), (9, 9), 2.5)
    weight = np.maximum(inside, feather)[..., None]  # fully replaced inside, feathered only outwards
    image[y1:y2, x1:x2] = np.clip(source * weight + template * (1 - weight), 0, 255).astype(np.uint8)
    return True


def build_background(image: np.ndarray, detections: list[Rect], cut_masks: list[np.ndarray]) -> np.ndarray:
    holes = np.zeros(image.shape[:2], np.uint8)
    for x1, y1, x2, y2 in detections:  # kites in the sky too: the detector calls the red one a person
        holes[max(0, y1 - 3) : y2 + 4, max(0, x1 - 3) : x2 + 4] = 1
    for mask in cut_masks:
        holes |= cv2.dilate(mask, np.ones((9, 9), np.uint8))
    for x1, y1, x2, y2 in BACKGROUND_EXTRA_HOLES:
        holes[y1:y2, x1:x2] = 1
    filled = image.copy()
    unfilled = holes.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes)
    waiting = sorted(range(1, count), key=lambda k: stats[k, cv2.CC_STAT_AREA])  # small first: more clean sources
    while waiting:  # a hole whose every source touches another hole waits until that one is filled
        progress = [k for k in waiting if fill_from_nearby_patch(filled, (labels == k).astype(np.uint8), unfilled)]
        if not progress:
            raise RuntimeError(f"{len(waiting)} background hole(s) have no hole-free source patch; widen the reach")
        for label in progress:
            unfilled[labels == label] = 0
        waiting = [k for k in waiting if k not in progress]
    cx1, cy1, cx2, cy2 = BACKGROUND_CROP
    return filled[cy1:cy2, cx1:cx2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS, help="asset folder to write (default: %(default)s)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Building synthetic scene assets from {PHOTOS} into {args.out}")

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    photos = {name: cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR) for name in {s.photo for s in SPRITES}}
    photos.setdefault(BACKGROUND_PHOTO, cv2.imread(str(PHOTOS / BACKGROUND_PHOTO), cv2.IMREAD_COLOR))
    detections = {name: detect_people(session, image) for name, image in photos.items()}
    background_detections = detect_people(session, photos[BACKGROUND_PHOTO], BACKGROUND_DETECTION_THRESHOLD)

    background_cut_masks: list[np.ndarray] = []
    for source in SPRITES:
        image = photos[source.photo]
        mask = grabcut_person(image, locate(source, detections[source.photo]), source)
        if source.photo == BACKGROUND_PHOTO:
            background_cut_masks.append(mask)
        sprite = sprite_from_mask(image, mask)
        path = args.out / f"{source.name}.png"
        cv2.imwrite(str(path), sprite, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"  {path.name}: {sprite.shape[1]}x{sprite.shape[0]} px")

    background = build_background(photos[BACKGROUND_PHOTO], background_detections, background_cut_masks)
    path = args.out / "background.jpg"
    cv2.imwrite(str(path), background, [cv2.IMWRITE_JPEG_QUALITY, BACKGROUND_JPEG_QUALITY])
    print(f"  {path.name}: {background.shape[1]}x{background.shape[0]} px")


if __name__ == "__main__":
    main()
