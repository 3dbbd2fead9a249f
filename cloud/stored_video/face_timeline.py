"""The watch-list timeline: one line per face in the video that matched someone in the face collection.

GetFaceSearch lists every face it tracked at each analysed moment (PersonMatch: Timestamp, Person with its
Index and BoundingBox, FaceMatches); a face with no FaceMatches resembles nobody on the watch-list and is
only counted. For a face with matches, the best one names the person (ExternalImageId, spaces stored as
underscores) and gives the collection's face id and the similarity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.schemas import face_person

Box = tuple[float, float, float, float]  # left, top, width, height as fractions of the frame


@dataclass(frozen=True)
class FaceMatchSighting:
    time_s: float
    person_index: int  # Rekognition's index of the tracked face in this video
    name: str
    face_id: str  # the matching face in the collection
    similarity: float  # 0-100
    box: Box

    def as_json(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "name": self.name, "face_id": self.face_id,
                "person_index": self.person_index, "similarity": round(self.similarity, 2),
                "box": [round(value, 4) for value in self.box]}


@dataclass(frozen=True)
class PersonSummary:
    name: str
    matches: int
    first_s: float
    last_s: float
    best: FaceMatchSighting


@dataclass
class FaceTimeline:
    matches: list[FaceMatchSighting]
    faces_seen: int  # every face sighting GetFaceSearch listed, matched or not
    collection_id: str

    def __post_init__(self) -> None:
        self.matches.sort(key=lambda match: (match.time_s, match.name))

    def people(self) -> list[PersonSummary]:
        """Each matched person, first seen first."""
        grouped: dict[str, list[FaceMatchSighting]] = {}
        for match in self.matches:
            grouped.setdefault(match.name, []).append(match)
        return [PersonSummary(name, len(found), found[0].time_s, found[-1].time_s,
                              max(found, key=lambda match: match.similarity))
                for name, found in grouped.items()]

    def boxes_at(self, time_s: float, tolerance_s: float) -> list[tuple[str, float, Box]]:
        """(name, similarity, box) of the matches at the analysed moment nearest `time_s`, within the tolerance."""
        if not self.matches:
            return []
        times = np.array([match.time_s for match in self.matches])
        nearest = float(times[np.abs(times - time_s).argmin()])
        if abs(nearest - time_s) > tolerance_s:
            return []
        return [(match.name, match.similarity, match.box) for match in self.matches if match.time_s == nearest]


def _box(raw: dict[str, Any] | None) -> Box:
    raw = raw or {}
    return (float(raw.get("Left", 0.0)), float(raw.get("Top", 0.0)), float(raw.get("Width", 0.0)),
            float(raw.get("Height", 0.0)))


def face_timeline_from_persons(persons: list[dict[str, Any]], collection_id: str) -> FaceTimeline:
    matches = []
    for item in persons:
        found = item.get("FaceMatches") or []
        if not found:
            continue
        best = max(found, key=lambda match: float(match.get("Similarity", 0.0)))
        face = best.get("Face") or {}
        person = item.get("Person") or {}
        box = person.get("BoundingBox") or (person.get("Face") or {}).get("BoundingBox")
        matches.append(FaceMatchSighting(
            time_s=float(item.get("Timestamp", 0)) / 1000.0, person_index=int(person.get("Index", -1)),
            name=face_person(str(face.get("ExternalImageId") or face.get("FaceId") or "?")),
            face_id=str(face.get("FaceId", "")), similarity=float(best.get("Similarity", 0.0)), box=_box(box)))
    return FaceTimeline(matches, len(persons), collection_id)


def write_face_timeline(timeline: FaceTimeline, path: Path) -> None:
    with path.open("w") as file:
        for match in timeline.matches:
            file.write(json.dumps(match.as_json()) + "\n")


def read_face_timeline(path: Path, collection_id: str = "") -> FaceTimeline:
    matches = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            box = row["box"]
            matches.append(FaceMatchSighting(row["time_s"], row["person_index"], row["name"], row["face_id"],
                                             row["similarity"], (box[0], box[1], box[2], box[3])))
    return FaceTimeline(matches, len(matches), collection_id)
