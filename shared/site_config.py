"""The site file: one YAML document that describes every camera of a site.

Every service reads the same file. Global defaults apply to each camera unless the
camera overrides them (the way Frigate's per-camera config inherits globals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ConfigError, describe_validation_error
from shared.event_rules import EventsConfig
from shared.zones import CameraRegions, CameraScene, RegionTransform

CameraRole = Literal["master", "slave"]


class Region(BaseModel):
    """A normalised rectangle (0..1) of a master camera's view."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    x0: float = Field(ge=0.0, le=1.0)
    y0: float = Field(ge=0.0, le=1.0)
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _positive_area(self) -> Region:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("region must have x1 > x0 and y1 > y0")
        return self


class Coverage(BaseModel):
    """Which part of which master view a slave camera shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    master: str
    region: Region

    @field_validator("region", mode="before")
    @classmethod
    def _region_from_list(cls, value: object) -> object:
        if isinstance(value, (list, tuple)) and len(value) == 4:
            x0, y0, x1, y1 = value
            return {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
        return value


class CameraDefaults(BaseModel):
    """Every per-camera setting, declared once with its default.

    The site file's ``defaults`` section sets them for all cameras; a camera entry overrides any
    of them. A new per-camera setting is one field here: the merge below is generic.
    """

    model_config = ConfigDict(extra="forbid")

    width: int = Field(1920, ge=16, le=8192)
    height: int = Field(1080, ge=16, le=8192)
    fps: float = Field(15.0, gt=0.0, le=240.0)
    cloud_sample_every: int = Field(10, ge=1, description="forward every Nth frame of a master camera to the cloud")


class CameraConfig(CameraDefaults, CameraRegions):
    """One camera entry of the site file, with the site's defaults merged in (zones, lines, masks and
    filters: shared/zones.py)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,48}$")
    source: str = Field(
        min_length=1,
        description="synthetic | file:///path.mp4[?loop=0] | rtsp://... | http(s)://... | usb://0",
    )
    role: CameraRole = "slave"
    name: str | None = None
    covers: Coverage | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id


class ResolvedCamera(CameraDefaults, CameraRegions):
    """A camera with every default filled in and its display name: what services actually use."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    source: str
    role: CameraRole
    covers: Coverage | None

    @property
    def is_master(self) -> bool:
        return self.role == "master"


def merge_camera_defaults(defaults: object, camera: object) -> object:
    """A camera entry over the site's defaults (an unset or null key of the camera takes the default)."""
    if not isinstance(defaults, dict) or not isinstance(camera, dict):
        return camera
    return {**defaults, **{key: value for key, value in camera.items() if value is not None}}


class SyntheticSceneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    people: int = Field(5, ge=0, le=64)
    scenario: Literal["wander", "walkthrough"] = "wander"


class PlacementGroup(BaseModel):
    """A camera group that runs on one edge server: capture and edge inference share its memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", description="group name (a DNS label)")
    node: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$",
                      description="value of the node label that pins the group to its server")
    cameras: list[str] = Field(min_length=1, max_length=256)


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = "site"
    defaults: CameraDefaults = CameraDefaults()
    synthetic_scene: SyntheticSceneConfig = SyntheticSceneConfig()
    cameras: list[CameraConfig] = Field(min_length=1)
    events: EventsConfig = EventsConfig()
    placement: list[PlacementGroup] = Field(default_factory=list, max_length=256,
                                            description="camera groups per edge server; empty: one server runs every camera")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("cameras"), list):
            try:  # bad defaults are reported once, under "defaults", not again under every camera
                defaults = CameraDefaults.model_validate(data.get("defaults") or {}).model_dump(exclude_unset=True)
            except ValidationError:
                return data
            data = {**data, "cameras": [merge_camera_defaults(defaults, camera) for camera in data["cameras"]]}
        return data

    @model_validator(mode="after")
    def _check_cameras(self) -> SiteConfig:
        ids = [camera.id for camera in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(duplicates)}")
        masters = {camera.id for camera in self.cameras if camera.role == "master"}
        for camera in self.cameras:
            if camera.covers is not None and camera.covers.master not in masters:
                raise ValueError(
                    f"camera {camera.id!r} covers {camera.covers.master!r}, which is not a master camera"
                )
        self._check_rules()
        self._check_placement(set(ids))
        return self

    def _check_rules(self) -> None:
        scenes = {camera.id: self.scene(camera.id) for camera in self.cameras}
        for rule in self.events.rules:
            unknown = [c for c in rule.cameras if c not in scenes]
            if unknown:
                raise ValueError(f"rule {rule.name!r} names camera {unknown[0]!r}, which is not in the site")
            watched = rule.cameras or tuple(scenes)
            if rule.zone is not None and not any(rule.zone in scenes[c].zones for c in watched):
                raise ValueError(f"rule {rule.name!r} names zone {rule.zone!r}, which no camera it watches has")
            if rule.line is not None and not any(rule.line in scenes[c].lines for c in watched):
                raise ValueError(f"rule {rule.name!r} names line {rule.line!r}, which no camera it watches has")

    def scene(self, camera_id: str) -> CameraScene:
        """A camera's zones, lines, masks and filters, with those of the master it covers mapped into its view."""
        by_id = {camera.id: camera for camera in self.cameras}
        camera = by_id[camera_id]
        if camera.covers is None:
            return CameraScene.build(camera.id, camera)
        region = camera.covers.region
        return CameraScene.build(camera.id, camera, by_id[camera.covers.master],
                                 RegionTransform(region.x0, region.y0, region.x1, region.y1))

    def _check_placement(self, ids: set[str]) -> None:
        if not self.placement:
            return
        groups = [group.group for group in self.placement]
        if len(set(groups)) != len(groups):
            raise ValueError("placement: group names must be unique")
        placed = [camera for group in self.placement for camera in group.cameras]
        unknown = sorted(set(placed) - ids)
        if unknown:
            raise ValueError(f"placement names camera {unknown[0]!r}, which is not in the cameras list")
        twice = sorted({camera for camera in placed if placed.count(camera) > 1})
        if twice:
            raise ValueError(f"placement puts camera {twice[0]!r} in more than one group")
        missing = sorted(ids - set(placed))
        if missing:
            raise ValueError(f"placement leaves camera {missing[0]!r} on no server")

    def placement_groups(self) -> list[PlacementGroup]:
        """The site's camera groups; a site without placement is one group on one server."""
        if self.placement:
            return list(self.placement)
        return [PlacementGroup(group="edge", node="edge", cameras=[camera.id for camera in self.cameras])]

    def resolved(self) -> list[ResolvedCamera]:
        return [self._resolve(camera) for camera in self.cameras]

    def camera(self, camera_id: str) -> ResolvedCamera:
        for camera in self.resolved():
            if camera.id == camera_id:
                return camera
        raise ConfigError(f"camera {camera_id!r} is not in site {self.site!r}")

    def masters(self) -> list[ResolvedCamera]:
        return [camera for camera in self.resolved() if camera.is_master]

    def _resolve(self, camera: CameraConfig) -> ResolvedCamera:
        return ResolvedCamera(**{**dict(camera), "name": camera.display_name})


def parse_site(document: object, origin: str = "site file") -> SiteConfig:
    try:
        return SiteConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {describe_validation_error(error)}") from None


def load_site(path: Path | str) -> SiteConfig:
    """Read and validate a site file; any problem becomes one ConfigError sentence."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"site file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"site file {path} cannot be read: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"site file {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"site file {path} must be a mapping with a 'cameras' list")
    return parse_site(document, origin=f"site file {path}")
