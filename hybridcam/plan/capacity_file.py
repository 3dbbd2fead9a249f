"""A server class's capacity file: what `bench/capacity.py` measured, and the CPU budget fitted to it.

The model is one CPU budget per server (its cores): each captured frame of a camera at resolution R
costs CPU-seconds (capture's, plus edge-infer's for reading and skipping it) and each analysed frame
more (edge-infer's model call), per back-end. A set of cameras fits a server while
``sum(capture_s * fps + analysis_s * analysed_fps) <= 1``, with both costs divided by the cores.

The bench measures the CPU time its processes actually got, so the costs hold on a busy machine
too: per point, ``edge_cpu = analysis_cpu * analysed + skip_cpu * captured`` is fitted by least
squares, ``capture_cpu / captured`` averaged. The check (`fit_report`) predicts each point's
analysed rate from the CPU edge-infer got and compares it with what was measured. Costs at a
resolution nobody measured are interpolated in pixels between the measured ones and labelled so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError, describe_validation_error

SATURATED = 0.95  # a point whose analysed rate is below this share of the offered rate used all the CPU it got
CAPACITY_FOLDER = Path(__file__).resolve().parents[2] / "config" / "capacity"


class MeasuredPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str = Field(min_length=1, max_length=32)
    cameras: int = Field(ge=1, le=256)
    fps: float = Field(gt=0, le=240)
    offered_fps: float = Field(gt=0)
    captured_fps: float = Field(ge=0)
    analysed_fps: float = Field(ge=0)
    capture_cpu: float = Field(ge=0, description="CPU-seconds per second the capture process used")
    edge_cpu: float = Field(ge=0, description="CPU-seconds per second the edge-infer process used")
    load_average: float | None = None

    @property
    def saturated(self) -> bool:
        return self.analysed_fps < SATURATED * self.offered_fps

    @property
    def representative(self) -> bool:
        """False where the machine was so busy that capture fell behind its cameras or edge-infer analysed
        under one frame/s: such a point measures the load, not the server."""
        return self.captured_fps >= SATURATED * self.offered_fps and self.analysed_fps >= 1.0


class ResolutionFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)
    jpeg_bytes: int = Field(gt=0, description="one real frame at this resolution as the sampler's JPEG (quality 85)")
    points: list[MeasuredPoint] = Field(min_length=1)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class FrameCosts:
    """CPU-seconds per captured frame (capture's, plus edge-infer's reading and skipping it) and per analysed frame."""

    capture_cpu: float
    analysis_cpu: float
    basis: str
    skip_cpu: float = 0.0  # the part of capture_cpu that edge-infer spends per captured frame

    def analysed_fps_given(self, edge_cpu: float, captured_fps: float) -> float:
        """What these costs say edge-infer analysed with this much CPU (CPU-seconds per second)."""
        return max(0.0, (edge_cpu - self.skip_cpu * captured_fps) / self.analysis_cpu)

    def budget(self, cores: int) -> Budget:
        return Budget(self.capture_cpu / cores, self.analysis_cpu / cores, self.basis)


@dataclass(frozen=True)
class Budget:
    """Shares of one server per captured and per analysed frame/s, for one back-end and resolution."""

    capture_s: float
    analysis_s: float
    basis: str  # "measured", "interpolated ...", "scaled ..."

    def analysed_fps(self, offered_fps: float) -> float:
        """What one server analyses of this many offered frames/s of this resolution alone."""
        room = 1.0 - self.capture_s * offered_fps
        return max(0.0, min(offered_fps, room / self.analysis_s))


class CapacityFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_class: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    description: str = Field(max_length=300)
    measured: bool = Field(description="false for a class whose figures are assumed (nobody here measured it)")
    source: str = Field("", max_length=500, description="where assumed figures come from")
    measured_on: str | None = None
    cores: int = Field(ge=1)
    gpus: int = Field(0, ge=0)
    load_average_at_start: float | None = None
    redis_bytes_per_frame_ref: int = Field(ge=0)
    redis_bytes_per_detection_set: int = Field(ge=0)
    resolutions: list[ResolutionFacts] = Field(min_length=1)

    def backends(self) -> list[str]:
        return sorted({point.backend for facts in self.resolutions for point in facts.points})

    def budget(self, backend: str, width: int, height: int) -> Budget:
        """One server's budget at this resolution (costs interpolated in pixels between measured ones)."""
        return self.costs(backend, width, height).budget(self.cores)

    def costs(self, backend: str, width: int, height: int) -> FrameCosts:
        measured = sorted((facts for facts in self.resolutions if any(p.backend == backend for p in facts.points)),
                          key=lambda facts: facts.pixels)
        if not measured:
            raise ConfigError(f"server class {self.server_class} has no figures for back-end {backend!r} "
                              f"(it has {', '.join(self.backends())})")
        pixels = width * height
        exact = next((facts for facts in measured if facts.pixels == pixels), None)
        if exact is not None:
            return fit_costs([p for p in exact.points if p.backend == backend])
        if len(measured) == 1:
            only = fit_costs([p for p in measured[0].points if p.backend == backend])
            scale = pixels / measured[0].pixels
            return FrameCosts(only.capture_cpu * scale, only.analysis_cpu,
                              f"scaled in pixels from {measured[0].width}x{measured[0].height}")
        index = sum(1 for facts in measured if facts.pixels < pixels)  # measured resolutions below this one
        index = min(max(index, 1), len(measured) - 1)
        low, high = measured[index - 1], measured[index]
        a = fit_costs([p for p in low.points if p.backend == backend])
        b = fit_costs([p for p in high.points if p.backend == backend])
        t = (pixels - low.pixels) / (high.pixels - low.pixels)
        capture = max(a.capture_cpu + t * (b.capture_cpu - a.capture_cpu), min(a.capture_cpu, b.capture_cpu) * 0.1)
        analysis = max(a.analysis_cpu + t * (b.analysis_cpu - a.analysis_cpu), min(a.analysis_cpu, b.analysis_cpu) * 0.5)
        verb = "interpolated" if 0.0 <= t <= 1.0 else "extrapolated"
        return FrameCosts(capture, analysis, f"{verb} in pixels from {low.width}x{low.height} and {high.width}x{high.height}")

    def jpeg_bytes(self, width: int, height: int) -> float:
        """Sampled JPEG size at this resolution: measured, or scaled in pixels from the nearest measured."""
        pixels = width * height
        nearest = min(self.resolutions, key=lambda facts: abs(np.log(facts.pixels / pixels)))
        return nearest.jpeg_bytes * pixels / nearest.pixels

    def reproduction(self) -> list[tuple[str, MeasuredPoint, float]]:
        """(label, point, analysed frames/s the costs predict with the CPU that point's processes got)."""
        rows = []
        for facts in self.resolutions:
            for backend in sorted({p.backend for p in facts.points}):
                costs = self.costs(backend, facts.width, facts.height)
                for point in (p for p in facts.points if p.backend == backend):
                    predicted = costs.analysed_fps_given(point.edge_cpu, point.captured_fps)
                    rows.append((f"{facts.width}x{facts.height} {backend} {point.cameras} x {point.fps:g} fps", point,
                                 min(predicted, point.captured_fps)))
        return rows

    def fit_report(self) -> list[str]:
        """One line per measured point: measured analysed fps against the costs' prediction."""
        lines = []
        for label, point, predicted in self.reproduction():
            error = (predicted - point.analysed_fps) / point.analysed_fps if point.analysed_fps else 0.0
            lines.append(f"{label}: measured {point.analysed_fps:.1f}, plan {predicted:.1f} analysed frames/s ({error:+.1%}) "
                         f"with {point.edge_cpu:.2f} CPU for edge-infer")
        return lines

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (f"# Capacity of server class {self.server_class}: written by bench/capacity.py (make bench),\n"
                  "# read by `hybridcam plan`. Figures are measured unless `measured: false`.\n")
        path.write_text(header + yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False), encoding="utf-8")


def fit_costs(points: list[MeasuredPoint]) -> FrameCosts:
    """Per-frame CPU costs from the points' CPU use (least squares for edge-infer's two terms)."""
    captured = sum(p.captured_fps for p in points)
    capture_cpu = sum(p.capture_cpu for p in points) / captured if captured else 0.0
    usable = [p for p in points if p.analysed_fps > 0]
    if not usable:
        raise ConfigError("a capacity file's points analysed nothing: run the bench again")
    skip_cpu, analysis_cpu = 0.0, sum(p.edge_cpu for p in usable) / sum(p.analysed_fps for p in usable)
    if len(usable) >= 2:
        matrix = np.array([[p.analysed_fps, p.captured_fps] for p in usable])
        (a, k), *_ = np.linalg.lstsq(matrix, np.array([p.edge_cpu for p in usable]), rcond=None)
        if a > 0 and k >= 0:
            analysis_cpu, skip_cpu = float(a), float(k)
    return FrameCosts(capture_cpu + skip_cpu, analysis_cpu, f"measured ({len(points)} points)", skip_cpu)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def this_machine_class() -> str:
    """The server class name `make bench` gives this machine: CPU model and cores."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")
    return f"cpu-{slug}-{os.cpu_count()}c"


def default_class(folder: Path = CAPACITY_FOLDER, fallback: str = "cpu-amd-epyc-2c") -> str:
    """This machine's class when `make bench` measured it here, else the committed development machine's."""
    own = this_machine_class()
    return own if (folder / f"{own}.yaml").exists() else fallback


def available_classes(folder: Path = CAPACITY_FOLDER) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_capacity(name_or_path: str, folder: Path = CAPACITY_FOLDER) -> CapacityFile:
    """A capacity file by class name (config/capacity/NAME.yaml) or path; problems are one sentence."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(available_classes(folder)) or "none"
        raise ConfigError(f"server class {name_or_path!r} has no capacity file (known classes: {known}; "
                          "`make bench` writes one for this machine)")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return CapacityFile.model_validate(document)
    except yaml.YAMLError as error:
        raise ConfigError(f"capacity file {path} is not valid YAML: {error}") from None
    except ValidationError as error:
        raise ConfigError(f"capacity file {path}: {describe_validation_error(error)}") from None
