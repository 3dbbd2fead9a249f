"""Fault scenario of the events service: `kill -9` while it writes events, clips and snapshots.

People flicker in and out of a zone so that events open and close and clips are finished every
second; the service is killed three times at random moments. After each kill the database must pass
SQLite's integrity check, and after the restart's reconciliation every file the database names must
exist, every file must be named by the database, no half-written clip may remain and no event may
stay open. Numbered as in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from shared.schemas import Detection, DetectionSet
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.faults.edge_stack import kill9
from tests.faults.report import FaultResult, record_fault
from tests.fixtures.pipeline import ServiceRunner, wait_until
from tests.test_events_footage import VIDEO
from tests.test_events_service import events_site

INSIDE = (300.0, 100.0, 420.0, 400.0)  # foot at (0.47, 0.93): on the floor


def flicker(bus: StreamBus, stop: threading.Event, fps: float = 10.0) -> None:
    """A person inside for 1.5 s, gone for 2.5 s (longer than the tracker remembers them), for ever: an event
    opens and closes every 4 s, its clip finished 0.3 s after it closes."""
    seq = 0
    while not stop.is_set():
        inside = seq % 40 < 15
        bus.publish(DETECTIONS_STREAM, DetectionSet(
            camera_id="room", seq=seq, frame_id=f"room-{seq}", capture_ts=time.time(), width=768, height=432, model="t",
            provider="t", latency_ms=1.0, detections=[Detection(label="person", score=0.9, box=INSIDE)] if inside else []))
        seq += 1
        stop.wait(1.0 / fps)


def consistency(events_dir: Path) -> dict[str, int]:
    """Problems in a stopped service's store: open events, missing files, stray files, partial files."""
    db = sqlite3.connect(events_dir / "events.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    media = events_dir / "media"
    named = {r[0] for r in db.execute("SELECT clip FROM events WHERE clip IS NOT NULL UNION SELECT snapshot FROM events "
                                      "WHERE snapshot IS NOT NULL")}
    files = {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}
    counts = {"events": db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
              "open": db.execute("SELECT COUNT(*) FROM events WHERE end_ts IS NULL").fetchone()[0],
              "clips": db.execute("SELECT COUNT(*) FROM events WHERE clip IS NOT NULL").fetchone()[0],
              "missing": len(named - files), "stray": len(files - named),
              "partial": sum(1 for f in files if f.endswith(".partial"))}
    db.close()
    return counts


@pytest.mark.faults_slow
def test_kill_9_of_the_events_service_during_writes_leaves_a_consistent_store(redis_server, tmp_path: Path) -> None:
    events_dir = tmp_path / "events"
    site = events_site(tmp_path / "site.yaml", VIDEO, close_after_s=0.3, pre_roll_s=1, post_roll_s=0.3)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_EVENTS_DIR": str(events_dir), "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    stop = threading.Event()
    publisher = threading.Thread(target=flicker, args=(bus, stop), daemon=True)
    rng = random.Random(25)
    after_kill = []
    try:
        process = runner.start("events")
        assert wait_until(lambda: "clips remuxed" in runner.logs(), 30), runner.logs()
        publisher.start()
        for _ in range(3):
            time.sleep(5.0 + rng.random() * 4.0)
            kill9(process)
            db = sqlite3.connect(events_dir / "events.sqlite")
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # WAL: a killed writer never corrupts
            db.close()
            after_kill.append(consistency(events_dir))
            started = time.monotonic()
            process = runner.start("events")
            starts = len(runner.processes)
            assert wait_until(lambda n=starts: runner.logs().count("clips remuxed") == n, 30), runner.logs()
            recovery_s = time.monotonic() - started
        time.sleep(6.0)
        stop.set()
        publisher.join(timeout=5)
        time.sleep(1.0)
        runner.stop_all()
        assert process.returncode == 0, runner.logs()
    finally:
        stop.set()
        runner.stop_all()
        bus.close()
    final = consistency(events_dir)
    reconciled = runner.logs().count("store reconciled after an unclean stop")
    record_fault(FaultResult("25 kill -9 events", "kill -9 of the events service three times while it writes",
                             recovery_s, expected=final["events"], seen=final["events"] - final["missing"], lost=final["missing"],
                             duplicated=0, notes=f"after the kills (before restart): {after_kill}; final: {final}; "
                                                 f"reconciled at {reconciled} restarts"))
    assert reconciled == 3, runner.logs()
    assert final["events"] >= 5 and final["clips"] >= 2
    assert final["open"] == final["missing"] == final["stray"] == final["partial"] == 0, final
