"""The label timeline: one line per label seen at a time, and the per-second series highlights are chosen by."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PERSON = "Person"


@dataclass(frozen=True)
class LabelSighting:
    time_s: float
    label: str
    confidence: float  # 0-100, as Rekognition gives it
    boxes: tuple[tuple[float, float, float, float], ...]  # (left, top, width, height), fractions of the frame

    def as_json(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "label": self.label, "confidence": round(self.confidence, 2),
                "boxes": [[round(v, 4) for v in box] for box in self.boxes]}


@dataclass
class Timeline:
    sightings: list[LabelSighting]
    duration_s: float
    by_time: dict[float, list[LabelSighting]] = field(init=False)

    def __post_init__(self) -> None:
        self.sightings.sort(key=lambda s: (s.time_s, s.label))
        grouped: dict[float, list[LabelSighting]] = defaultdict(list)
        for sighting in self.sightings:
            grouped[sighting.time_s].append(sighting)
        self.by_time = dict(grouped)

    def labels(self) -> list[str]:
        """Labels by how often they were seen, most first."""
        counts: dict[str, int] = defaultdict(int)
        for sighting in self.sightings:
            counts[sighting.label] += 1
        return sorted(counts, key=lambda name: (-counts[name], name))

    def per_second(self, metric: str, watch_labels: frozenset[str]) -> np.ndarray:
        """One value per whole second of video: `people` (most Person boxes at once) or `watch` (summed
        confidence of watch labels, 0-1 each)."""
        seconds = max(1, int(np.ceil(self.duration_s)))
        series = np.zeros(seconds, dtype=np.float64)
        for time_s, sightings in self.by_time.items():
            second = min(seconds - 1, int(time_s))
            if metric == "people":
                value = float(sum(len(s.boxes) or 1 for s in sightings if s.label == PERSON))
                series[second] = max(series[second], value)
            elif metric == "watch":
                series[second] += sum(s.confidence / 100.0 for s in sightings if s.label in watch_labels)
            else:
                raise ValueError(f"unknown metric {metric!r}")
        return series

    def boxes_at(self, time_s: float, tolerance_s: float) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """(label, confidence, box) of the sample nearest `time_s`, if one lies within the tolerance."""
        if not self.by_time:
            return []
        times = np.fromiter(self.by_time.keys(), dtype=np.float64)
        nearest = float(times[np.abs(times - time_s).argmin()])
        if abs(nearest - time_s) > tolerance_s:
            return []
        return [(s.label, s.confidence, box) for s in self.by_time[nearest] for box in s.boxes]


def timeline_from_labels(labels: list[dict[str, Any]], duration_s: float) -> Timeline:
    sightings = []
    for item in labels:
        label = item.get("Label") or {}
        boxes = tuple(
            (float(b.get("Left", 0.0)), float(b.get("Top", 0.0)), float(b.get("Width", 0.0)), float(b.get("Height", 0.0)))
            for instance in label.get("Instances", [])
            if (b := instance.get("BoundingBox"))
        )
        sightings.append(LabelSighting(float(item.get("Timestamp", 0)) / 1000.0, str(label.get("Name", "?")),
                                       float(label.get("Confidence", 0.0)), boxes))
    return Timeline(sightings, duration_s)


def write_timeline(timeline: Timeline, path: Path) -> None:
    with path.open("w") as file:
        for sighting in timeline.sightings:
            file.write(json.dumps(sighting.as_json()) + "\n")


def read_timeline(path: Path, duration_s: float) -> Timeline:
    sightings = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            sightings.append(LabelSighting(row["time_s"], row["label"], row["confidence"],
                                           tuple((box[0], box[1], box[2], box[3]) for box in row["boxes"])))
    return Timeline(sightings, duration_s)
