"""The events service as a process: detections from a real Redis, the clip from the camera's own file stream,
the notification through the local stack's SNS (moto) with a link to the stored event."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import yaml

from shared.schemas import Detection, DetectionSet
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.fixtures.pipeline import ServiceRunner, wait_until
from tests.test_events_footage import FLOOR, VIDEO
from tests.test_events_notifications import sent, topic  # noqa: F401 (fixture)

FIRST_ENTRY_FRAME = 60


def events_site(path: Path, video: Path, **events) -> Path:
    path.write_text(yaml.safe_dump({"site": "t", "cameras": [{
        "id": "room", "name": "Meeting room", "role": "master", "source": f"file://{video}?loop=1", "width": 768, "height": 432,
        "fps": 10, "zones": {"floor": FLOOR}}],
        "events": {"pre_roll_s": 2, "post_roll_s": 1, "rules": [{"name": "walk-in", "zone": "floor", "notify": ["email"]}], **events}}))
    return path


def publish_frames(bus: StreamBus, reference: list, first: int, last: int, fps: float = 10.0) -> None:
    """The detections of frames first..last, published at the camera's rate as edge inference would."""
    start = time.time()
    for index in range(first, last):
        due = start + (index - first) / fps
        time.sleep(max(0.0, due - time.time()))
        bus.publish(DETECTIONS_STREAM, DetectionSet(
            camera_id="room", seq=index, frame_id=f"room-{index}", capture_ts=time.time(), width=768, height=432,
            model="reference", provider="test", latency_ms=1.0,
            detections=[Detection(label=d[0], score=d[1], box=tuple(d[2:6])) for d in reference[index]]))


def test_the_service_records_an_event_with_a_clip_and_notifies_once_with_a_link(redis_server, aws_env, topic, tmp_path: Path) -> None:  # noqa: F811
    arn, queue = topic
    with gzip.open(VIDEO.with_name("one-by-one-person-detection.detections.json.gz"), "rt") as stream:
        reference = json.load(stream)["reference"]
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url, "HYBRIDCAM_SITE_FILE": str(events_site(tmp_path / "site.yaml", VIDEO)),
           "HYBRIDCAM_EVENTS_DIR": str(tmp_path / "events"), "HYBRIDCAM_EVENTS_ALERT_TOPIC_ARN": arn,
           "HYBRIDCAM_EVENTS_LINK_BASE": "http://cams.example.net:8088", "PYTHONUNBUFFERED": "1", **aws_env}
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    try:
        process = runner.start("events")
        assert wait_until(lambda: "clips remuxed from h264" in runner.logs(), 30), runner.logs()
        publish_frames(bus, reference, FIRST_ENTRY_FRAME - 20, FIRST_ENTRY_FRAME + 30)  # 2 s empty, then a person walks in
        db = tmp_path / "events" / "events.sqlite"
        assert wait_until(lambda: db.exists() and sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1, 10)
        time.sleep(1.0)
        runner.stop_all()
        assert process.returncode == 0, runner.logs()
    finally:
        runner.stop_all()
        bus.close()
    row = sqlite3.connect(db).execute("SELECT id, rule, camera, zone, clip, snapshot, notified_ts, state FROM events").fetchone()
    event_id, rule, camera, zone, clip, snapshot, notified_ts, state = row
    assert (rule, camera, zone, state) == ("walk-in", "room", "floor", "closed") and notified_ts
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,nb_frames", "-of", "csv=p=0",
                            str(tmp_path / "events" / "media" / clip)], capture_output=True, text=True, check=True).stdout
    codec, frames = probe.strip().split(",")
    assert codec == "h264" and int(frames) >= 25  # pre-roll (back to a keyframe) + the 3 s with the person + post-roll
    assert snapshot is None  # no capture ran, so no frame ring to take the snapshot from
    texts = sent(queue)
    assert len(texts) == 1 and texts[0].endswith(f"http://cams.example.net:8088/events/{event_id}")
    assert "walk-in: person in floor on Meeting room at" in texts[0]


def test_a_synthetic_camera_gets_clips_encoded_once_and_snapshots_from_its_frame_ring(redis_server, tmp_path: Path) -> None:
    from shared.schemas import FrameRef, decode_as
    from shared.stream_bus import frames_stream

    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"site": "t", "defaults": {"width": 640, "height": 360, "fps": 5},
                                    "synthetic_scene": {"people": 2},
                                    "cameras": [{"id": "beach", "role": "master", "source": "synthetic", "zones": {"sand": FLOOR}}],
                                    "events": {"pre_roll_s": 1, "post_roll_s": 1, "rules": [{"name": "on-sand", "zone": "sand"}]}}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HYBRIDCAM_"))}, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "HYBRIDCAM_SITE_FILE": str(site), "HYBRIDCAM_EVENTS_DIR": str(tmp_path / "events"), "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    try:
        runner.start("capture")
        events = runner.start("events")
        assert wait_until(lambda: "clips encoded once from its frames (H.264 640x360)" in runner.logs(), 30), runner.logs()
        last, published, started = "$", 0, time.monotonic()
        while time.monotonic() - started < 8:  # a person stands on the sand for 3 s, then nobody (detections by hand)
            for entry in bus.follow({frames_stream("beach"): last}, count=10, block_ms=500):
                last = entry.entry_id
                ref = decode_as(entry.payload, FrameRef)
                someone = 1.0 < time.monotonic() - started < 4.0
                bus.publish(DETECTIONS_STREAM, DetectionSet(
                    camera_id="beach", seq=ref.seq, frame_id=ref.frame_id, capture_ts=ref.capture_ts, width=640, height=360,
                    model="t", provider="t", latency_ms=1.0,
                    detections=[Detection(label="person", score=0.9, box=(300.0, 150.0, 360.0, 330.0))] if someone else []))
                published += 1
        time.sleep(1.5)
        runner.stop_all()
        assert events.returncode == 0, runner.logs()
    finally:
        runner.stop_all()
        bus.close()
    assert published >= 25
    db = sqlite3.connect(tmp_path / "events" / "events.sqlite")
    [(clip, snapshot, start, end)] = db.execute("SELECT clip, snapshot, start_ts, end_ts FROM events").fetchall()
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,nb_frames", "-of", "csv=p=0",
                            str(tmp_path / "events" / "media" / clip)], capture_output=True, text=True, check=True).stdout
    codec, width, frames = probe.strip().split(",")
    assert (codec, width) == ("h264", "640") and int(frames) >= 5 * (end - start)  # the event's span at 5 fps, and more
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "events" / "media" / clip), "-f", "null", "-"], check=True)
    assert snapshot and (tmp_path / "events" / "media" / snapshot).stat().st_size > 5_000
