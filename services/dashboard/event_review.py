"""The review page's routes: stored events (the events service's SQLite, read-only), their clips and
snapshots, the activity bar, and each camera's zones and masks for the tiles.

``/review`` and ``/events/<id>`` (the link notifications carry) serve the same page; it opens the
event named in the address. Everything sits behind the dashboard's token and CSP like the rest.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse

from shared.event_store import EventStore
from shared.site_config import SiteConfig

MAX_WINDOW_S = 7 * 86_400.0


class EventArchive:
    """Opens the events database when it appears (the events service may start after the dashboard)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._store: EventStore | None = None
        self._lock = threading.Lock()

    def store(self) -> EventStore:
        with self._lock:
            if self._store is None:
                try:
                    self._store = EventStore(self.directory, readonly=True)
                except (FileNotFoundError, sqlite3.Error) as error:
                    raise HTTPException(503, f"no events yet: {error}") from None
            return self._store

    def media(self, event: dict, kind: str) -> Path:
        name = event.get(kind)
        if not name:
            raise HTTPException(404, f"event {event['id']} has no {kind} (none was recorded, or retention removed it)")
        path = (self.store().media / name).resolve()
        if self.store().media.resolve() not in path.parents or not path.is_file():
            raise HTTPException(404, f"the {kind} of event {event['id']} is gone")
        return path

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def add_event_routes(app: FastAPI, archive: EventArchive, site: SiteConfig, page: Path) -> None:
    regions = {camera.id: site.scene(camera.id).as_json() for camera in site.resolved()}

    @app.get("/review", include_in_schema=False)
    def review() -> FileResponse:
        return FileResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/events/{event_id}", include_in_schema=False)
    def event_page(event_id: str) -> FileResponse:
        return FileResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/regions")
    def camera_regions() -> dict[str, Any]:
        return regions

    @app.get("/api/events")
    def list_events(since: float | None = Query(None, ge=0), until: float | None = Query(None, ge=0),
                    camera: str | None = None, rule: str | None = None, zone: str | None = None,
                    label: str | None = None, limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
        store = archive.store()
        until = time.time() if until is None else until
        since = max(until - 3600.0, 0.0) if since is None else since
        if until - since > MAX_WINDOW_S:
            raise HTTPException(422, "the window may span at most 7 days")
        events = store.events(since, until, camera, rule, zone, label, limit)
        return {"since": since, "until": until, "events": events, "facets": store.facets(), "span": store.span(),
                "activity": store.activity(since, until, camera)}

    @app.get("/api/events/{event_id}")
    def one_event(event_id: str) -> dict[str, Any]:
        return _event(archive, event_id)

    @app.get("/api/events/{event_id}/clip.mp4")
    def clip(event_id: str) -> FileResponse:
        return FileResponse(archive.media(_event(archive, event_id), "clip"), media_type="video/mp4",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/events/{event_id}/snapshot.jpg")
    def snapshot(event_id: str) -> FileResponse:
        return FileResponse(archive.media(_event(archive, event_id), "snapshot"), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=3600"})


def _event(archive: EventArchive, event_id: str) -> dict[str, Any]:
    event = archive.store().event(event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id!r} (retention may have removed it)")
    return event
