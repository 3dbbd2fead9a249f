"""The edit decision list: one JSON line per cut (time, camera, reason), so every cut can be explained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.compositor.director import Cut

END_REASON = "program ended"


@dataclass(frozen=True)
class Shot:
    camera: str
    start_s: float
    end_s: float
    reason: str
    forced: bool
    framing: str = "full"

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EditDecisionList:
    """Appends cuts to a JSON-lines file as they happen (flushed, so a crash keeps them).

    Past ``max_bytes`` the file is renamed to ``<name>.1`` (replacing the previous one) and a new
    one is started, so the list keeps the recent cuts without growing forever.
    """

    def __init__(self, path: Path, program_start: float, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = path
        self.program_start = program_start
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def record(self, cut: Cut) -> None:
        self._write(
            {
                "time": round(cut.time, 3),
                "program_s": round(cut.time - self.program_start, 3),
                "camera": cut.camera,
                "reason": cut.reason,
                "forced": cut.forced,
                "scores": cut.scores,
                "framing": cut.framing,
            }
        )

    def close(self, end_time: float) -> None:
        if self._file is None:
            return
        self._write({"time": round(end_time, 3), "program_s": round(end_time - self.program_start, 3), "camera": None, "reason": END_REASON})
        self._file.close()
        self._file = None

    def _write(self, entry: dict) -> None:
        assert self._file is not None
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()
        if self._file.tell() > self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("a", encoding="utf-8")


def read_edl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def shots_of(entries: list[dict], end_s: float | None = None) -> list[Shot]:
    """Shots between consecutive cuts; the last one ends at the end entry (or ``end_s``)."""
    shots = []
    for entry, following in zip(entries, entries[1:] + [None]):
        if entry["camera"] is None:
            break
        stop = following["program_s"] if following is not None else end_s
        if stop is None:
            break
        shots.append(Shot(entry["camera"], entry["program_s"], stop, entry["reason"], bool(entry.get("forced")),
                          entry.get("framing", "full")))
    return shots
