"""Events on the edge: one SQLite database (WAL) plus the clip and snapshot files beside it.

The events service writes it; the dashboard reads it (``readonly=True``) for the review page.

Files are written first (to a ``.partial`` name, renamed when complete) and recorded in the
database after, in one transaction, so a crash leaves at worst an unreferenced file; :meth:`reconcile`
at start removes those, clears references to files that are gone and closes events the crash left
open. Retention is by age and by disk budget, oldest first.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    rule TEXT NOT NULL,
    zone TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    track_ids TEXT NOT NULL DEFAULT '[]',
    start_ts REAL NOT NULL,
    end_ts REAL,
    opened_ts REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    snapshot TEXT,
    snapshot_bytes INTEGER NOT NULL DEFAULT 0,
    clip TEXT,
    clip_bytes INTEGER NOT NULL DEFAULT 0,
    clip_start_ts REAL,
    clip_end_ts REAL,
    cloud_labels TEXT NOT NULL DEFAULT '[]',
    face_match TEXT,
    notified_ts REAL,
    notification TEXT,
    confirmation TEXT,
    uploaded_ts REAL
);
CREATE INDEX IF NOT EXISTS events_by_start ON events (start_ts);
CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera, start_ts);
CREATE TABLE IF NOT EXISTS activity (
    camera TEXT NOT NULL,
    bucket_ts INTEGER NOT NULL,
    objects INTEGER NOT NULL,
    PRIMARY KEY (camera, bucket_ts)
);
"""
ACTIVITY_BUCKET_S = 10
JSON_COLUMNS = ("labels", "track_ids", "cloud_labels")


@dataclass(frozen=True)
class RetentionReport:
    events_removed: int
    clips_removed: int
    bytes_freed: int


class EventStore:
    def __init__(self, directory: Path, readonly: bool = False) -> None:
        self.directory = Path(directory)
        self.media = self.directory / "media"
        self.path = self.directory / "events.sqlite"
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no events database at {self.path} (has the events service run?)")
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0,
                                      isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            return
        self.media.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def media_path(self, camera: str, event_id: str, suffix: str, ts: float) -> Path:
        day = time.strftime("%Y-%m-%d", time.gmtime(ts))
        path = self.media / camera / day / f"{event_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def open_event(self, event_id: str, camera: str, rule: str, zone: str, severity: str, labels: list[str],
                   track_ids: list[int], start_ts: float, opened_ts: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events (id, camera, rule, zone, severity, labels, track_ids, start_ts, opened_ts) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (event_id, camera, rule, zone, severity, json.dumps(sorted(labels)), json.dumps(sorted(track_ids)),
                        start_ts, opened_ts))

    def update_event(self, event_id: str, **fields: Any) -> None:
        if not fields:
            return
        values = [json.dumps(sorted(v)) if k in JSON_COLUMNS and not isinstance(v, str) else v for k, v in fields.items()]
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE events SET {columns} WHERE id = ?", (*values, event_id))

    def attach_file(self, event_id: str, kind: str, path: Path, **extra: Any) -> None:
        """Record a completed clip or snapshot file (kind: ``clip`` or ``snapshot``)."""
        self.update_event(event_id, **{kind: str(path.relative_to(self.media)), f"{kind}_bytes": path.stat().st_size}, **extra)

    def pending_uploads(self, settled_before: float, limit: int = 20) -> list[dict]:
        """Closed events, ended before ``settled_before`` (their clips finished), not yet sent to the cloud."""
        rows = self.db.execute("SELECT * FROM events WHERE uploaded_ts IS NULL AND end_ts IS NOT NULL AND end_ts < ? "
                               "ORDER BY start_ts LIMIT ?", (settled_before, limit))
        return [as_dict(row) for row in rows]

    def mark_notified(self, event_id: str, ts: float, text: str) -> bool:
        """Record a notification once; False when the event was already notified (never a second one)."""
        with self.transaction() as db:
            changed = db.execute("UPDATE events SET notified_ts = ?, notification = ? WHERE id = ? AND notified_ts IS NULL",
                                 (ts, text, event_id)).rowcount
        return changed == 1

    def forget_person(self, name: str) -> int:
        """Remove a watch-list name from every event's face matches (``hybridcam faces remove``); events changed."""
        changed = 0
        with self.transaction() as db:
            for row in db.execute("SELECT id, face_match FROM events WHERE face_match IS NOT NULL").fetchall():
                people = [p for p in row["face_match"].split(", ") if p]
                kept = [p for p in people if p != name]
                if kept != people:
                    db.execute("UPDATE events SET face_match = ? WHERE id = ?", (", ".join(kept) or None, row["id"]))
                    changed += 1
        return changed

    def add_activity(self, camera: str, ts: float, objects: int) -> None:
        bucket = int(ts // ACTIVITY_BUCKET_S * ACTIVITY_BUCKET_S)
        self.db.execute("INSERT INTO activity (camera, bucket_ts, objects) VALUES (?, ?, ?) "
                        "ON CONFLICT (camera, bucket_ts) DO UPDATE SET objects = MAX(objects, excluded.objects)",
                        (camera, bucket, objects))

    def event(self, event_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return as_dict(row) if row else None

    def events(self, since: float = 0.0, until: float = float("inf"), camera: str | None = None, rule: str | None = None,
               zone: str | None = None, label: str | None = None, limit: int = 500) -> list[dict]:
        query = "SELECT * FROM events WHERE start_ts >= ? AND start_ts <= ?"
        args: list[object] = [since, min(until, 4e9)]
        for column, value in (("camera", camera), ("rule", rule), ("zone", zone)):
            if value:
                query += f" AND {column} = ?"
                args.append(value)
        if label:
            query += " AND EXISTS (SELECT 1 FROM json_each(events.labels) WHERE value = ?)"
            args.append(label)
        query += " ORDER BY start_ts DESC LIMIT ?"
        args.append(limit)
        return [as_dict(row) for row in self.db.execute(query, args)]

    def facets(self) -> dict[str, list[str]]:
        """The cameras, rules, zones and labels that occur in stored events (the review page's filters)."""
        facets = {column: [r[0] for r in self.db.execute(f"SELECT DISTINCT {column} FROM events ORDER BY 1")]
                  for column in ("camera", "rule", "zone")}
        facets["label"] = [r[0] for r in self.db.execute(
            "SELECT DISTINCT json_each.value FROM events, json_each(events.labels) ORDER BY 1")]
        return facets

    def span(self) -> tuple[float, float] | None:
        """Start of the oldest and of the newest stored event."""
        row = self.db.execute("SELECT MIN(start_ts), MAX(start_ts) FROM events").fetchone()
        return (row[0], row[1]) if row[0] is not None else None

    def activity(self, since: float, until: float, camera: str | None = None) -> list[dict]:
        query = "SELECT * FROM activity WHERE bucket_ts >= ? AND bucket_ts <= ?"
        args: list[object] = [since, until]
        if camera:
            query += " AND camera = ?"
            args.append(camera)
        return [dict(row) for row in self.db.execute(query + " ORDER BY bucket_ts", args)]

    def reconcile(self, now: float) -> dict[str, int]:
        """After a crash: close events left open, forget files that are gone, remove files nobody references."""
        counts = {"closed": 0, "missing_files": 0, "orphan_files": 0}
        with self.transaction() as db:
            counts["closed"] = db.execute("UPDATE events SET end_ts = MAX(start_ts, opened_ts), state = 'interrupted' "
                                          "WHERE end_ts IS NULL").rowcount
            for row in db.execute("SELECT id, clip, snapshot FROM events WHERE clip IS NOT NULL OR snapshot IS NOT NULL").fetchall():
                for kind in ("clip", "snapshot"):
                    if row[kind] and not (self.media / row[kind]).exists():
                        db.execute(f"UPDATE events SET {kind} = NULL, {kind}_bytes = 0 WHERE id = ?", (row["id"],))
                        counts["missing_files"] += 1
            referenced = {r[k] for r in db.execute("SELECT clip, snapshot FROM events") for k in (0, 1) if r[k]}
        for path in self.media.rglob("*"):
            if path.is_file() and str(path.relative_to(self.media)) not in referenced:
                path.unlink(missing_ok=True)
                counts["orphan_files"] += 1
        return counts

    def enforce_retention(self, now: float, days: float, budget_bytes: float) -> RetentionReport:
        """Remove events older than ``days`` (with their files), then the oldest clips and snapshots beyond the budget."""
        removed = clips = freed = 0
        cutoff = now - days * 86_400
        old = self.db.execute("SELECT id, clip, snapshot, clip_bytes, snapshot_bytes FROM events WHERE start_ts < ? "
                              "AND end_ts IS NOT NULL", (cutoff,)).fetchall()
        for row in old:
            freed += self._remove_files(row)
            clips += bool(row["clip"])
        with self.transaction() as db:
            removed = db.executemany("DELETE FROM events WHERE id = ?", [(row["id"],) for row in old]).rowcount
            db.execute("DELETE FROM activity WHERE bucket_ts < ?", (cutoff,))
        used = self.db.execute("SELECT COALESCE(SUM(clip_bytes + snapshot_bytes), 0) FROM events").fetchone()[0]
        if used > budget_bytes:
            for row in self.db.execute("SELECT id, clip, snapshot, clip_bytes, snapshot_bytes FROM events "
                                       "WHERE clip IS NOT NULL OR snapshot IS NOT NULL ORDER BY start_ts").fetchall():
                if used <= budget_bytes:
                    break
                size = self._remove_files(row)
                self.update_event(row["id"], clip=None, clip_bytes=0, snapshot=None, snapshot_bytes=0)
                used -= row["clip_bytes"] + row["snapshot_bytes"]
                freed += size
                clips += bool(row["clip"])
        return RetentionReport(removed, clips, freed)

    def used_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(clip_bytes + snapshot_bytes), 0) FROM events").fetchone()[0])

    def _remove_files(self, row: sqlite3.Row) -> int:
        freed = 0
        for kind in ("clip", "snapshot"):
            if row[kind]:
                path = self.media / row[kind]
                if path.exists():
                    freed += path.stat().st_size
                    path.unlink()
        return freed

    def close(self) -> None:
        self.db.close()


def as_dict(row: sqlite3.Row) -> dict:
    item = dict(row)
    for column in JSON_COLUMNS:
        item[column] = json.loads(item[column] or "[]")
    return item
