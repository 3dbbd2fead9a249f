"""Zones, lines, masks and per-label object filters of one camera, in normalised coordinates (0..1).

The site file declares them per camera (``zones``, ``lines``, ``masks``, ``filters``). A zone, line
or mask drawn on a master also applies to each slave that ``covers`` part of it: its points are
mapped into the slave's view, where they may lie outside 0..1 (only the covered part matters).

An object's position is the bottom-centre of its box (where it stands), as NVRs do: a detection
whose bottom-centre falls in a mask is dropped before motion, tracks and rules see it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Point = tuple[float, float]
MAX_POINTS = 64
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,48}$"


def _points(value: object, least: int, what: str) -> list[Point]:
    if not isinstance(value, (list, tuple)) or not least <= len(value) <= MAX_POINTS:
        raise ValueError(f"a {what} needs {least} to {MAX_POINTS} points [x, y]")
    points = []
    for point in value:
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise ValueError(f"each point of a {what} is [x, y], got {point!r}")
        x, y = (float(v) for v in point)
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"{what} point {[x, y]} is outside the picture: coordinates are fractions 0..1")
        points.append((x, y))
    return points


def polygon_area(points: Sequence[Point]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]]))) / 2


class Polygon(BaseModel):
    """A closed polygon of at least three points."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: tuple[Point, ...]

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        if isinstance(value, dict):
            return value
        return {"points": value}

    @field_validator("points", mode="before")
    @classmethod
    def _check(cls, value: object) -> object:
        points = _points(value, 3, "polygon")
        if polygon_area(points) < 1e-6:
            raise ValueError("a polygon must enclose an area (its points lie on one line)")
        return tuple(points)


class Line(BaseModel):
    """A tripwire from its first point to its second; ``left_to_right`` is seen walking from a to b."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: tuple[Point, Point]

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        if isinstance(value, dict):
            return value
        return {"points": value}

    @field_validator("points", mode="before")
    @classmethod
    def _check(cls, value: object) -> object:
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise ValueError("a line is exactly two points [[x, y], [x, y]]")
        a, b = _points(value, 2, "line")
        if a == b:
            raise ValueError("a line needs two different points")
        return (a, b)


class ObjectFilter(BaseModel):
    """What a detection of one label must be to count: area as a fraction of the picture, aspect = width/height."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_score: float = Field(0.0, ge=0.0, le=1.0)
    min_area: float = Field(0.0, ge=0.0, le=1.0)
    max_area: float = Field(1.0, gt=0.0, le=1.0)
    min_ratio: float = Field(0.0, ge=0.0, le=100.0)
    max_ratio: float = Field(100.0, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> ObjectFilter:
        if self.min_area >= self.max_area:
            raise ValueError("an object filter needs min_area < max_area")
        if self.min_ratio >= self.max_ratio:
            raise ValueError("an object filter needs min_ratio < max_ratio")
        return self

    def keeps(self, score: float, box: Sequence[float], width: int, height: int) -> bool:
        w, h = max(0.0, box[2] - box[0]), max(0.0, box[3] - box[1])
        area = w * h / float(width * height)
        ratio = w / h if h > 0 else 100.0
        return (score >= self.min_score and self.min_area <= area <= self.max_area
                and self.min_ratio <= ratio <= self.max_ratio)


class CameraRegions(BaseModel):
    """The part of a camera's site-file entry this module owns (mixed into the camera's config)."""

    model_config = ConfigDict(extra="forbid")

    zones: dict[str, Polygon] = Field(default_factory=dict, description="named polygons, normalised")
    lines: dict[str, Line] = Field(default_factory=dict, description="named tripwires, normalised")
    masks: list[Polygon] = Field(default_factory=list, description="regions ignored for motion and detections")
    filters: dict[str, ObjectFilter] = Field(default_factory=dict, description="per-label object filters")

    @field_validator("zones", "lines")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not re.match(NAME_PATTERN, str(name)):
                raise ValueError(f"name {name!r} may use only letters, digits, _ and - (at most 48)")
        return value


def point_in_polygon(x: float, y: float, points: Sequence[Point]) -> bool:
    """Even-odd rule (ray casting)."""
    inside = False
    j = len(points) - 1
    for i in range(len(points)):
        xi, yi = points[i]
        xj, yj = points[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def side_of_line(x: float, y: float, line: tuple[Point, Point]) -> float:
    """Positive on the right of a→b (image coordinates, y down), negative on its left."""
    (ax, ay), (bx, by) = line
    return (bx - ax) * (y - ay) - (by - ay) * (x - ax)


def segments_cross(p: Point, q: Point, line: tuple[Point, Point]) -> bool:
    """Whether the step p→q crosses the segment of ``line`` (not just its infinite extension)."""
    a, b = line
    d1, d2 = side_of_line(*p, line), side_of_line(*q, line)
    d3, d4 = side_of_line(*a, (p, q)), side_of_line(*b, (p, q))
    return (d1 > 0) != (d2 > 0) and d1 != 0 and (d3 > 0) != (d4 > 0)


def foot_point(box: Sequence[float], width: int, height: int) -> Point:
    """Bottom-centre of a pixel box, normalised: where the object stands."""
    return ((box[0] + box[2]) / 2 / width, box[3] / height)


@dataclass(frozen=True)
class RegionTransform:
    """Maps master coordinates into a slave's view: the slave shows ``region`` of the master."""

    x0: float = 0.0
    y0: float = 0.0
    x1: float = 1.0
    y1: float = 1.0

    def apply(self, points: Iterable[Point]) -> tuple[Point, ...]:
        sx, sy = self.x1 - self.x0, self.y1 - self.y0
        return tuple(((x - self.x0) / sx, (y - self.y0) / sy) for x, y in points)


@dataclass(frozen=True)
class CameraScene:
    """The zones, lines, masks and filters in force on one camera (its own plus those of its master)."""

    camera_id: str
    zones: dict[str, tuple[Point, ...]]
    lines: dict[str, tuple[Point, Point]]
    masks: tuple[tuple[Point, ...], ...]
    filters: dict[str, ObjectFilter]

    @classmethod
    def build(cls, camera_id: str, own: CameraRegions, master: CameraRegions | None = None,
              covers: RegionTransform | None = None) -> CameraScene:
        zones = {name: zone.points for name, zone in own.zones.items()}
        lines = {name: line.points for name, line in own.lines.items()}
        masks = [mask.points for mask in own.masks]
        filters = dict(master.filters) if master is not None else {}
        filters.update(own.filters)
        if master is not None and covers is not None:
            for name, zone in master.zones.items():
                zones.setdefault(name, covers.apply(zone.points))
            for name, line in master.lines.items():
                a, b = covers.apply(line.points)
                lines.setdefault(name, (a, b))
            masks.extend(covers.apply(mask.points) for mask in master.masks)
        return cls(camera_id, zones, lines, tuple(masks), filters)

    def masked(self, point: Point) -> bool:
        return any(point_in_polygon(point[0], point[1], mask) for mask in self.masks)

    def keeps(self, label: str, score: float, box: Sequence[float], width: int, height: int) -> bool:
        """A detection counts unless its label's filter refuses it or it stands in a mask."""
        rule = self.filters.get(label)
        if rule is not None and not rule.keeps(score, box, width, height):
            return False
        return not (self.masks and self.masked(foot_point(box, width, height)))

    def zones_at(self, point: Point) -> list[str]:
        return [name for name, zone in self.zones.items() if point_in_polygon(point[0], point[1], zone)]

    def as_json(self) -> dict:
        """What the dashboard draws over the camera's tile."""
        return {"zones": {n: [list(p) for p in z] for n, z in self.zones.items()},
                "lines": {n: [list(p) for p in line] for n, line in self.lines.items()},
                "masks": [[list(p) for p in m] for m in self.masks]}
