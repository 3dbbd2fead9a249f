"""hybridcam's built-in synthetic multi-camera scene.

People cut out of real photos walk across a real background (a beach; see ``scene_assets/`` and
``scripts/build_scene_assets.py``). N virtual cameras with known geometry look at it: a master sees the whole
world, each slave sees a normalised rectangle of it, so ground truth (which person is where in which camera) is
exact and shared by every camera.

Everything is a pure function of (seed, t): ``render`` and ``ground_truth`` give the same answer whatever the
call order, in any process.

World model
    The world is ``world_size`` pixels. People stand on the ground between ``GROUND_TOP`` and
    ``GROUND_BOTTOM`` (fractions of the world height); their height grows linearly from far to near
    (vertical perspective). A person's position is (u, v): u = feet x / world width, v = depth
    (0 far, 1 near).
Scenarios
    ``wander``: each person crosses the world on a smooth, gently curving path, enters at one side, leaves at
    the other, is away for a while and comes back on another path.
    ``walkthrough``: one group (up to three people) visits every slave region in turn, pausing in each, then
    leaves the world for an empty period and starts again; ``walkthrough_schedule()`` lists the periods.
Speed
    Each camera's background view is resized once; sprites are cached at quantised heights; a frame is one
    background copy plus an alpha blend per visible person on a small region of interest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

ASSET_DIR = Path(__file__).with_name("scene_assets")
SCENARIOS = ("wander", "walkthrough")

# Ground and perspective, as fractions of the world height. At 1080p in the master a far person is ~76 px
# tall and a near one ~232 px (+-7% per person); slaves zoom in further.
GROUND_TOP = 0.40
GROUND_BOTTOM = 0.97
HEIGHT_FAR = 0.07
HEIGHT_NEAR = 0.215
HEIGHT_JITTER = 0.07  # +- per person
PERSON_HEIGHT_M = 1.7
WALK_SPEED_M_S = 1.4
STEP_HZ = 1.8
BOB_FRACTION = 0.012  # vertical bob of the walking gait, as a fraction of the person's height
SIZE_STEP = 1.02  # sprite heights are quantised to this geometric grid, so few cached resizes serve all frames
MIN_DRAWN_HEIGHT_PX = 4

# Wander: each person comes back every PERIOD seconds (per person, drawn from this range).
WANDER_PERIOD_S = (22.0, 34.0)
WANDER_MIN_AWAY_S = 1.5
OFF_WORLD_U = 0.07  # feet this far outside [0, 1] put the whole person outside the world

# Walkthrough
GROUP_MAX = 3
PAUSE_S = 6.0
EMPTY_S = 6.0
GROUP_SPEED_M_S = 1.6
MIN_TRAVEL_S = 2.5


@dataclass(frozen=True)
class ViewRegion:
    """Normalised rectangle of the world; the master camera sees (0, 0, 1, 1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, box: tuple[float, float, float, float]) -> bool:
        return self.x0 <= box[0] and self.y0 <= box[1] and box[2] <= self.x1 and box[3] <= self.y1


@dataclass(frozen=True)
class VirtualCamera:
    camera_id: str
    role: Literal["master", "slave"]
    region: ViewRegion
    width: int
    height: int


@dataclass(frozen=True)
class GroundTruthPerson:
    person_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in that camera's pixels, clipped to the frame
    visible_fraction: float  # visible part of the person's full silhouette (0..1): frame edges and occluders


@dataclass(frozen=True)
class SpriteVariant:
    """One person's look: a photo cut-out, maybe mirrored and re-coloured."""

    bgr: np.ndarray
    alpha: np.ndarray  # float32 0..1

    @property
    def aspect(self) -> float:
        return self.bgr.shape[1] / self.bgr.shape[0]


@dataclass(frozen=True)
class ScaledSprite:
    bgr: np.ndarray
    weight: np.ndarray  # float32 alpha at this size
    inverse_weight: np.ndarray
    mask: np.ndarray  # bool: the person's silhouette, for visible_fraction


@dataclass(frozen=True)
class Pose:
    """Where one person stands at one instant, in ground coordinates."""

    person_id: int
    u: float
    v: float
    bob: float  # upward gait offset, as a fraction of the height


@dataclass(frozen=True)
class Placement:
    """A person drawn in one camera: integer pixel rectangle (may reach outside the frame)."""

    person_id: int
    sprite: ScaledSprite
    x1: int
    y1: int

    @property
    def x2(self) -> int:
        return self.x1 + self.sprite.bgr.shape[1]

    @property
    def y2(self) -> int:
        return self.y1 + self.sprite.bgr.shape[0]


@dataclass(frozen=True)
class WalkSegment:
    t_start: float
    t_end: float
    start: tuple[float, float]  # group centre (u, v)
    end: tuple[float, float]
    region_id: str | None  # set while the group pauses inside a region
    empty: bool = False


@dataclass(frozen=True)
class WanderCrossing:
    start_s: float  # within the person's period
    duration_s: float
    u0: float
    u1: float
    v0: float
    v1: float
    wobble: float
    wobble_phase: float


@lru_cache(maxsize=4)
def load_assets(folder: Path = ASSET_DIR) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The background (BGR) and the person cut-outs (BGRA), read once per process."""
    background = cv2.imread(str(folder / "background.jpg"), cv2.IMREAD_COLOR)
    if background is None:
        raise FileNotFoundError(f"synthetic scene background missing: {folder / 'background.jpg'}")
    loaded = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(folder.glob("person_*.png"))]
    sprites = tuple(s for s in loaded if s is not None and s.ndim == 3 and s.shape[2] == 4)
    if not sprites or len(sprites) != len(loaded):
        raise FileNotFoundError(f"synthetic scene person sprites (BGRA person_*.png) missing or unreadable in {folder}")
    return background, sprites


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def foot_y_fraction(v: float) -> float:
    return GROUND_TOP + v * (GROUND_BOTTOM - GROUND_TOP)


def height_fraction(v: float) -> float:
    return HEIGHT_FAR + v * (HEIGHT_NEAR - HEIGHT_FAR)


def quantised_height(height_px: float) -> int:
    step = round(math.log(max(height_px, 1.0)) / math.log(SIZE_STEP))
    return max(1, round(SIZE_STEP**step))


def overlap_fraction(box: tuple[float, float, float, float], region: ViewRegion) -> float:
    """Share of the (normalised) box's area that lies inside the region."""
    ix = max(0.0, min(box[2], region.x1) - max(box[0], region.x0))
    iy = max(0.0, min(box[3], region.y1) - max(box[1], region.y0))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


def recolour(bgr: np.ndarray, hue_shift: int) -> np.ndarray:
    """Shift the hue of the blue-ish clothing (the photos' jackets and hoodies); skin and sand stay as they are."""
    if hue_shift == 0:
        return bgr
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    hue = hsv[..., 0].astype(np.int16)
    clothing = (hue >= 85) & (hue <= 140) & (hsv[..., 1] > 50)
    hsv[..., 0] = np.where(clothing, (hue + hue_shift) % 180, hue).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


class SyntheticScene:
    """Deterministic people-on-a-beach scene seen by several virtual cameras."""

    def __init__(self, cameras: Sequence[VirtualCamera], seed: int = 7, people: int = 5, scenario: str = "wander",
                 world_size: tuple[int, int] = (3840, 2160)) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown synthetic scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if not cameras:
            raise ValueError("a synthetic scene needs at least one virtual camera")
        if people < 0:
            raise ValueError(f"people must be >= 0, got {people}")
        self.seed = int(seed)
        self.people = int(people)
        self.scenario = scenario
        self.world_size = (int(world_size[0]), int(world_size[1]))
        self.cameras: dict[str, VirtualCamera] = {}
        for camera in cameras:
            if camera.camera_id in self.cameras:
                raise ValueError(f"camera id {camera.camera_id!r} appears twice")
            r = camera.region
            if not (0.0 <= r.x0 < r.x1 <= 1.0 and 0.0 <= r.y0 < r.y1 <= 1.0):
                raise ValueError(f"camera {camera.camera_id}: view region {r} is not inside (0, 0, 1, 1)")
            if camera.width <= 0 or camera.height <= 0:
                raise ValueError(f"camera {camera.camera_id}: size {camera.width}x{camera.height} is not positive")
            self.cameras[camera.camera_id] = camera

        background, sprites = load_assets()
        self._backgrounds = {cid: self._background_view(background, cam) for cid, cam in self.cameras.items()}
        self._variants = [self._variant(sprites, p) for p in range(self.people)]
        self._height_scale = [self._person_rng(p, 0).uniform(1 - HEIGHT_JITTER, 1 + HEIGHT_JITTER) for p in range(self.people)]
        self._scaled = lru_cache(maxsize=2048)(self._scale_sprite)
        self._crossing = lru_cache(maxsize=4096)(self._wander_crossing)
        self._periods = [self._person_rng(p, 1).uniform(*WANDER_PERIOD_S) for p in range(self.people)]
        self._phases = [self._person_rng(p, 2).uniform(0.0, 1.0) for p in range(self.people)]
        self._walk_segments: list[WalkSegment] = self._plan_walkthrough() if scenario == "walkthrough" else []

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def default_site(cls, num_cameras: int = 6, width: int = 1920, height: int = 1080, seed: int = 7,
                     scenario: str = "wander") -> SyntheticScene:
        """One master seeing the whole world, then slaves on the four quadrants and the centre (in that order)."""
        regions = [
            ("north-west", ViewRegion(0.0, 0.0, 0.5, 0.5)),
            ("north-east", ViewRegion(0.5, 0.0, 1.0, 0.5)),
            ("south-west", ViewRegion(0.0, 0.5, 0.5, 1.0)),
            ("south-east", ViewRegion(0.5, 0.5, 1.0, 1.0)),
            ("centre", ViewRegion(0.25, 0.25, 0.75, 0.75)),
        ]
        if not 1 <= num_cameras <= 1 + len(regions):
            raise ValueError(f"default_site has 1 to {1 + len(regions)} cameras, not {num_cameras}")
        cameras = [VirtualCamera("wide", "master", ViewRegion(0.0, 0.0, 1.0, 1.0), width, height)]
        cameras += [VirtualCamera(cid, "slave", region, width, height) for cid, region in regions[: num_cameras - 1]]
        return cls(cameras, seed=seed, scenario=scenario)

    def _person_rng(self, person_id: int, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, person_id, *stream])

    def _variant(self, sprites: tuple[np.ndarray, ...], person_id: int) -> SpriteVariant:
        base = sprites[person_id % len(sprites)]
        bgr = np.ascontiguousarray(base[..., :3])
        alpha = base[..., 3].astype(np.float32) / 255.0
        rng = self._person_rng(person_id, 3)
        repeat = person_id // len(sprites)
        if repeat:  # same photo again: give it other clothes so people stay distinguishable
            bgr = recolour(bgr, int(40 * repeat + rng.integers(0, 20)) % 180)
        if rng.random() < 0.5:
            bgr, alpha = bgr[:, ::-1].copy(), alpha[:, ::-1].copy()
        return SpriteVariant(bgr, alpha)

    def _background_view(self, background: np.ndarray, camera: VirtualCamera) -> np.ndarray:
        """The camera's crop of the background at camera size (sub-pixel exact: one affine warp)."""
        bh, bw = background.shape[:2]
        r = camera.region
        sx = camera.width / ((r.x1 - r.x0) * bw)
        sy = camera.height / ((r.y1 - r.y0) * bh)
        matrix = np.array([[sx, 0.0, -r.x0 * bw * sx], [0.0, sy, -r.y0 * bh * sy]])
        interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
        if interpolation == cv2.INTER_AREA:
            crop = background[int(r.y0 * bh): math.ceil(r.y1 * bh), int(r.x0 * bw): math.ceil(r.x1 * bw)]
            return cv2.resize(crop, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(background, matrix, (camera.width, camera.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def _scale_sprite(self, person_id: int, height: int, width: int) -> ScaledSprite:
        variant = self._variants[person_id]
        shrinking = height < variant.bgr.shape[0]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        bgr = cv2.resize(variant.bgr, (width, height), interpolation=interpolation)
        weight = np.clip(cv2.resize(variant.alpha, (width, height), interpolation=interpolation), 0.0, 1.0)
        return ScaledSprite(bgr, weight, 1.0 - weight, weight >= 0.5)

    # ------------------------------------------------------------------------------------------------ motion
    def poses(self, t: float) -> list[Pose]:
        """Everyone inside or near the world at time t (seconds), in ground coordinates."""
        if self.scenario == "walkthrough":
            return self._walkthrough_poses(t)
        return [pose for p in range(self.people) if (pose := self._wander_pose(p, t)) is not None]

    def _wander_crossing(self, person_id: int, cycle: int) -> WanderCrossing:
        rng = self._person_rng(person_id, 10, cycle & 0xFFFFFFFF)
        leftwards = rng.random() < 0.5
        u0, u1 = (1 + OFF_WORLD_U, -OFF_WORLD_U) if leftwards else (-OFF_WORLD_U, 1 + OFF_WORLD_U)
        v0, v1 = rng.uniform(0.0, 1.0, 2)
        mean_height_px = height_fraction((v0 + v1) / 2) * self.world_size[1] * self._height_scale[person_id]
        speed_px = WALK_SPEED_M_S * rng.uniform(0.85, 1.2) * mean_height_px / PERSON_HEIGHT_M
        period = self._periods[person_id]
        duration = min(abs(u1 - u0) * self.world_size[0] / speed_px, period - WANDER_MIN_AWAY_S)
        start = rng.uniform(0.0, period - duration)
        return WanderCrossing(start, duration, u0, u1, v0, v1, rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi))

    def _wander_pose(self, person_id: int, t: float) -> Pose | None:
        period = self._periods[person_id]
        shifted = t + self._phases[person_id] * period
        cycle = math.floor(shifted / period)
        crossing = self._crossing(person_id, cycle)
        s = (shifted - cycle * period - crossing.start_s) / crossing.duration_s
        if not 0.0 <= s <= 1.0:
            return None
        u = crossing.u0 + (crossing.u1 - crossing.u0) * s
        wobble = crossing.wobble * math.sin(2 * math.pi * s + crossing.wobble_phase) * math.sin(math.pi * s)
        v = min(1.0, max(0.0, crossing.v0 + (crossing.v1 - crossing.v0) * smoothstep(s) + wobble))
        return Pose(person_id, u, v, self._bob(person_id, t))

    def _bob(self, person_id: int, t: float) -> float:
        return BOB_FRACTION * abs(math.sin(math.pi * STEP_HZ * t + person_id))

    # ---------------------------------------------------------------------------------------- walkthrough
    def _group_size(self) -> int:
        return min(self.people, GROUP_MAX)

    def _group_offsets(self, v: float) -> list[tuple[float, float]]:
        """Per member (du, dv): side by side, a little staggered in depth."""
        n = self._group_size()
        width_u = height_fraction(v) * self.world_size[1] * 0.6 / self.world_size[0]
        return [((i - (n - 1) / 2) * width_u, 0.03 * (i % 2)) for i in range(n)]

    def _group_world_box(self, u: float, v: float) -> tuple[float, float, float, float]:
        """Normalised box around the whole group at (u, v), sized for the tallest possible member."""
        W, H = self.world_size
        boxes = []
        for du, dv in self._group_offsets(v):
            vv = min(1.0, v + dv)
            h = height_fraction(vv) * (1 + HEIGHT_JITTER) * (1 + BOB_FRACTION)
            half_w = h * H * 0.45 / W / 2 + 0.005  # widest sprite is ~0.45 of its height
            foot = foot_y_fraction(vv)
            boxes.append((u + du - half_w, foot - h, u + du + half_w, foot))
        return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)

    def _slave_regions(self) -> list[tuple[str, ViewRegion]]:
        slaves = [(cid, cam.region) for cid, cam in self.cameras.items() if cam.role == "slave"]
        return slaves or [(cid, cam.region) for cid, cam in self.cameras.items()]

    def _region_spot(self, region_id: str, regions: list[tuple[str, ViewRegion]]) -> tuple[float, float]:
        """Group centre that puts the whole group inside this region and as little of it as possible in any other
        (so each pause has one clear region), then as far from the region's edges as possible."""
        region = dict(regions)[region_id]
        others = [r for cid, r in regions if cid != region_id]
        best: tuple[tuple[float, float], tuple[float, float]] | None = None
        for u in np.linspace(0.0, 1.0, 81):
            for v in np.linspace(0.0, 1.0, 41):
                box = self._group_world_box(float(u), float(v))
                if not region.contains(box):
                    continue
                shared = max((overlap_fraction(box, other) for other in others), default=0.0)
                margin = min((box[0] - region.x0) / (region.x1 - region.x0), (region.x1 - box[2]) / (region.x1 - region.x0),
                             (box[1] - region.y0) / (region.y1 - region.y0), (region.y1 - box[3]) / (region.y1 - region.y0))
                score = (round(shared * 20) / 20, -margin)
                if best is None or score < best[0]:
                    best = (score, (float(u), float(v)))
        if best is None:  # region too small or above the ground: stand as close to its centre as the ground allows
            centre_y = (region.y0 + region.y1) / 2
            v = min(1.0, max(0.0, (centre_y - GROUND_TOP) / (GROUND_BOTTOM - GROUND_TOP)))
            return (region.x0 + region.x1) / 2, v
        return best[1]

    def _visit_order(self, spots: dict[str, tuple[float, float]]) -> list[str]:
        """Greedy nearest-neighbour tour from the first slave, so walks between regions stay short."""
        W, H = self.world_size
        remaining = list(spots)
        order = [remaining.pop(0)]
        while remaining:
            u, v = spots[order[-1]]
            nearest = min(remaining, key=lambda cid: math.hypot((spots[cid][0] - u) * W,
                                                                (foot_y_fraction(spots[cid][1]) - foot_y_fraction(v)) * H))
            remaining.remove(nearest)
            order.append(nearest)
        return order

    def _travel_s(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        W, H = self.world_size
        distance = math.hypot((b[0] - a[0]) * W, (foot_y_fraction(b[1]) - foot_y_fraction(a[1])) * H)
        px_per_m = height_fraction((a[1] + b[1]) / 2) * H / PERSON_HEIGHT_M
        return max(MIN_TRAVEL_S, distance / (GROUP_SPEED_M_S * px_per_m))

    def _plan_walkthrough(self) -> list[WalkSegment]:
        regions = self._slave_regions()
        spots = {cid: self._region_spot(cid, regions) for cid, _ in regions}
        order = self._visit_order(spots)
        margin = OFF_WORLD_U + 0.1  # the group's half width must be off the world too
        segments: list[WalkSegment] = []
        t = 0.0
        for i, cid in enumerate(order):
            spot = spots[cid]
            segments.append(WalkSegment(t, t + PAUSE_S, spot, spot, cid))
            t += PAUSE_S
            if i + 1 < len(order):
                duration = self._travel_s(spot, spots[order[i + 1]])
                segments.append(WalkSegment(t, t + duration, spot, spots[order[i + 1]], None))
                t += duration
        last, first = spots[order[-1]], spots[order[0]]
        exit_point = (1 + margin if last[0] >= 0.5 else -margin, last[1])
        entry_point = (-margin if first[0] < 0.5 else 1 + margin, first[1])
        for start, end, empty in ((last, exit_point, False), (entry_point, entry_point, True), (entry_point, first, False)):
            duration = EMPTY_S if empty else self._travel_s(start, end)
            segments.append(WalkSegment(t, t + duration, start, end, None, empty))
            t += duration
        return segments

    @property
    def walkthrough_period(self) -> float:
        """Seconds of one walkthrough loop (0 for other scenarios)."""
        return self._walk_segments[-1].t_end if self._walk_segments else 0.0

    def walkthrough_schedule(self) -> list[tuple[float, float, str | None]]:
        """One loop of the walkthrough: (t_start, t_end, region camera id) while the group pauses inside that
        slave's region, (t_start, t_end, None) while nobody is in the world. Gaps between entries are walks from
        one region to the next. The schedule repeats every ``walkthrough_period`` seconds."""
        if self.scenario != "walkthrough":
            raise ValueError(f"the {self.scenario!r} scenario has no walkthrough schedule")
        return [(s.t_start, s.t_end, s.region_id) for s in self._walk_segments if s.region_id is not None or s.empty]

    def _walkthrough_poses(self, t: float) -> list[Pose]:
        period = self.walkthrough_period
        local = t - math.floor(t / period) * period
        segment = next((s for s in self._walk_segments if local < s.t_end), self._walk_segments[-1])
        if segment.empty:
            return []
        s = smoothstep((local - segment.t_start) / (segment.t_end - segment.t_start))
        u = segment.start[0] + (segment.end[0] - segment.start[0]) * s
        v = segment.start[1] + (segment.end[1] - segment.start[1]) * s
        walking = segment.start != segment.end
        poses = []
        for person_id, (du, dv) in enumerate(self._group_offsets(v)):
            sway = 0.0 if walking else 0.002 * math.sin(0.7 * t + person_id * 2.1)
            bob = self._bob(person_id, t) if walking else 0.0
            poses.append(Pose(person_id, u + du + sway, min(1.0, v + dv), bob))
        return poses

    # -------------------------------------------------------------------------------------------- geometry
    def _world_box(self, pose: Pose) -> tuple[float, float, float, float]:
        W, H = self.world_size
        height = height_fraction(pose.v) * H * self._height_scale[pose.person_id]
        foot = foot_y_fraction(pose.v) * H - pose.bob * height
        half_width = height * self._variants[pose.person_id].aspect / 2
        x = pose.u * W
        return x - half_width, foot - height, x + half_width, foot

    def people_world_boxes(self, t: float) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(person_id, x1, y1, x2, y2 in world pixels, unclipped) of everyone at least partly inside the world."""
        W, H = self.world_size
        boxes = [(pose.person_id, self._world_box(pose)) for pose in self.poses(t)]
        return sorted((pid, box) for pid, box in boxes if box[2] > 0 and box[0] < W and box[3] > 0 and box[1] < H)

    def _placements(self, camera: VirtualCamera, t: float) -> list[Placement]:
        """People drawn in this camera, in drawing order (far first, so nearer people occlude farther ones)."""
        W, H = self.world_size
        r = camera.region
        sx = camera.width / ((r.x1 - r.x0) * W)
        sy = camera.height / ((r.y1 - r.y0) * H)
        placements = []
        poses = sorted(self.poses(t), key=lambda p: (p.v, p.person_id))
        for pose in poses:
            x1, y1, x2, y2 = self._world_box(pose)
            height = quantised_height((y2 - y1) * sy)
            if height < MIN_DRAWN_HEIGHT_PX:
                continue
            width = max(1, round(height * self._variants[pose.person_id].aspect * sx / sy))
            left = round(((x1 + x2) / 2 - r.x0 * W) * sx - width / 2)
            bottom = round((y2 - r.y0 * H) * sy)
            top = bottom - height
            if left >= camera.width or left + width <= 0 or top >= camera.height or bottom <= 0:
                continue
            placements.append(Placement(pose.person_id, self._scaled(pose.person_id, height, width), left, top))
        return placements

    def _camera(self, camera_id: str) -> VirtualCamera:
        camera = self.cameras.get(camera_id)
        if camera is None:
            raise KeyError(f"no virtual camera {camera_id!r} in the synthetic scene (cameras: {', '.join(self.cameras)})")
        return camera

    # ------------------------------------------------------------------------------------------- rendering
    def render(self, camera_id: str, t: float, out: np.ndarray | None = None) -> np.ndarray:
        """The camera's BGR frame at time t; written into ``out`` (exactly camera-sized, uint8) when given."""
        camera = self._camera(camera_id)
        shape = (camera.height, camera.width, 3)
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"camera {camera_id}: output buffer is {out.dtype} {out.shape}, needs uint8 {shape}")
        np.copyto(out, self._backgrounds[camera_id])
        for placement in self._placements(camera, t):
            self._blend(out, placement)
        return out

    @staticmethod
    def _blend(frame: np.ndarray, placement: Placement) -> None:
        fh, fw = frame.shape[:2]
        x1, y1 = max(0, placement.x1), max(0, placement.y1)
        x2, y2 = min(fw, placement.x2), min(fh, placement.y2)
        sx, sy = x1 - placement.x1, y1 - placement.y1
        sprite = placement.sprite
        rows, cols = slice(sy, sy + y2 - y1), slice(sx, sx + x2 - x1)
        roi = frame[y1:y2, x1:x2]
        roi[...] = cv2.blendLinear(np.ascontiguousarray(sprite.bgr[rows, cols]), np.ascontiguousarray(roi),
                                   np.ascontiguousarray(sprite.weight[rows, cols]),
                                   np.ascontiguousarray(sprite.inverse_weight[rows, cols]))

    # ---------------------------------------------------------------------------------------- ground truth
    def ground_truth(self, camera_id: str, t: float) -> list[GroundTruthPerson]:
        """Everyone drawn in this camera at time t, sorted by person id.

        ``box`` is the person's drawn rectangle clipped to the frame; ``visible_fraction`` is the share of the
        person's silhouette pixels that are inside the frame and not covered by people drawn after them.
        """
        camera = self._camera(camera_id)
        placements = self._placements(camera, t)
        truth = []
        for index, placement in enumerate(placements):
            x1, y1 = max(0, placement.x1), max(0, placement.y1)
            x2, y2 = min(camera.width, placement.x2), min(camera.height, placement.y2)
            mask = placement.sprite.mask
            total = int(mask.sum())
            visible = mask[y1 - placement.y1: y2 - placement.y1, x1 - placement.x1: x2 - placement.x1].copy()
            for front in placements[index + 1:]:
                ox1, oy1 = max(x1, front.x1), max(y1, front.y1)
                ox2, oy2 = min(x2, front.x2), min(y2, front.y2)
                if ox1 < ox2 and oy1 < oy2:
                    visible[oy1 - y1: oy2 - y1, ox1 - x1: ox2 - x1] &= ~front.sprite.mask[
                        oy1 - front.y1: oy2 - front.y1, ox1 - front.x1: ox2 - front.x1]
            fraction = float(visible.sum()) / total if total else 0.0
            truth.append(GroundTruthPerson(placement.person_id, (float(x1), float(y1), float(x2), float(y2)),
                                           round(fraction, 4)))
        return sorted(truth, key=lambda person: person.person_id)

    def export_ground_truth(self, path: Path, duration_s: float, fps: float) -> int:
        """Write JSON lines {t, camera_id, people: [{person_id, box, visible_fraction}]} for every camera and
        frame t = i / fps, 0 <= t < duration_s. Returns the number of lines written."""
        if fps <= 0 or duration_s < 0:
            raise ValueError(f"export needs fps > 0 and duration >= 0 (got fps={fps}, duration={duration_s})")
        lines = 0
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for frame in range(math.ceil(duration_s * fps - 1e-9)):
                t = frame / fps
                for camera_id in self.cameras:
                    people = [{"person_id": p.person_id, "box": [round(v, 2) for v in p.box],
                               "visible_fraction": p.visible_fraction} for p in self.ground_truth(camera_id, t)]
                    handle.write(json.dumps({"t": round(t, 6), "camera_id": camera_id, "people": people}) + "\n")
                    lines += 1
        return lines
