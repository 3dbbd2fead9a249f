"""`hybridcam director-eval` on real footage: a recorded clip as a multi-camera rig, with the edge
detections of every frame read from the committed cache (so the model does not run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from services.compositor.recorded_rig import camera_frames, parse_file_source, rig_cameras, rig_site_yaml
from shared.site_config import parse_site

DATA = Path(__file__).parent / "data" / "video"
CLIP = DATA / "one-by-one-cut.mp4"


def test_a_rig_from_a_clip_is_the_full_frame_and_scaled_crops_with_their_covers() -> None:
    cameras = rig_cameras(CLIP, slave_count=3)
    wide, *slaves = cameras
    assert wide.is_master and (wide.width, wide.height) == (768, 432) and parse_file_source(wide.source).crop is None
    for slave in slaves:
        crop = parse_file_source(slave.source).crop
        assert slave.covers is not None and slave.covers.master == "wide" and slave.covers.region == crop
        frame = next(camera_frames(slave, limit=1))
        assert frame.shape == (432, 768, 3)
    full = next(camera_frames(wide, limit=1)).copy()
    left = next(camera_frames(slaves[0], limit=1))
    region = slaves[0].covers.region  # type: ignore[union-attr]
    expected = cv2.resize(full[int(region.y0 * 432): int(region.y1 * 432), int(region.x0 * 768): int(region.x1 * 768)], (768, 432))
    assert abs(float(left.mean()) - float(expected.mean())) < 2.0, "a slave is the covered crop of the master, scaled"
    site = parse_site(yaml.safe_load(rig_site_yaml("clip", cameras)))
    assert [c.covers for c in site.resolved()] == [c.covers for c in cameras]


@pytest.mark.parametrize(("clip", "extra"), [
    (CLIP, []),
    # cars cross the road in a few seconds each: every crop that frames one must still be cut to
    (DATA / "car-detection.mp4", ["--labels", "car,truck,bus"]),
], ids=["people", "cars"])
def test_director_eval_on_a_real_clip_meets_the_shot_grammar(tmp_path: Path, clip: Path, extra: list[str]) -> None:
    cache = DATA / f"{clip.stem}.detections.nanodet.json"
    assert cache.exists(), "the committed detection cache is missing"
    before = cache.read_bytes()
    reply = subprocess.run([sys.executable, "-m", "hybridcam", "director-eval", "--clip", str(clip), "--out", str(tmp_path), "--json",
                            *extra], capture_output=True, text=True, timeout=120)
    assert reply.returncode == 0, reply.stderr[-2000:]
    assert "detecting" not in reply.stdout, "every camera's detections should come from the cache"
    assert cache.read_bytes() == before
    report = json.loads(reply.stdout.strip().splitlines()[-1])
    new, old = report["action"], report["everyone_visible"]
    assert 4.0 <= new["average_shot_s"] <= 10.0, new
    assert new["short_unforced"] == 0
    assert new["action_on_screen"] >= 0.9
    assert new["pan_accel_p95"] <= new["pan_accel_bound"] + 1e-6
    assert not new["unused_framing_shots"], new
    assert old["average_shot_s"] > new["average_shot_s"], "the old rule holds the wide shot far longer on real people"
    for line in ("average shot length", "cuts per minute", "shots under 2 s", "action region on screen", "pan acceleration p95",
                 "shot-length histogram", "old: everyone visible"):
        assert line in reply.stdout
    assert {shot["camera"].split("/")[0] for shot in report["shots"]} >= {"left", "right", "centre"} - set(new["unused_framing_shots"])
    sheet = cv2.imread(str(tmp_path / f"{clip.stem}-contact-sheet.png"))
    assert sheet is not None and sheet.shape[1] == 5 * 384
    rows = (len(report["shots"]) + 4) // 5
    assert sheet.shape[0] == 40 + rows * (216 + 58)
    assert all(shot["reason"] for shot in report["shots"])


@pytest.mark.parametrize("source", ["file:clip.mp4?crop=0.1,0.2,0.9", "rtsp://camera/stream"])
def test_a_bad_recorded_source_is_one_clear_error(source: str) -> None:
    from shared.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_file_source(source)


def test_director_eval_replays_a_recorded_run_from_the_detection_stream(redis_server, tmp_path: Path) -> None:
    """A live run leaves its detection sets on the stream; director-eval replays them at their publish times."""
    from devstack.director_eval import EPOCH, synthetic_site
    from shared.schemas import Detection, DetectionSet
    from shared.stream_bus import DETECTIONS_STREAM, StreamBus

    scene, cameras = synthetic_site("walkthrough", width=640, height=360)
    site = tmp_path / "site.yaml"
    lines = ["site: recorded", "synthetic_scene: {seed: 7, people: 3, scenario: walkthrough}", "cameras:"]
    for camera in cameras:
        covers = "" if camera.covers is None else (
            f", covers: {{master: wide, region: [{camera.covers.region.x0}, {camera.covers.region.y0}, "
            f"{camera.covers.region.x1}, {camera.covers.region.y1}]}}")
        lines.append(f"  - {{id: {camera.id}, role: {camera.role}, source: synthetic, width: 640, height: 360{covers}}}")
    site.write_text("\n".join(lines) + "\n")
    bus = StreamBus(redis_server.url, maxlen=100_000)
    seconds, fps = 40.0, 3.0
    for camera in cameras:
        for seq in range(int(seconds * fps)):
            t = seq / fps
            people = [Detection(label="person", score=0.9, box=p.box) for p in scene.ground_truth(camera.id, t) if p.visible_fraction >= 0.3]
            bus.publish(DETECTIONS_STREAM, DetectionSet(
                camera_id=camera.id, seq=seq, frame_id=f"{camera.id}-{seq}", capture_ts=EPOCH + t, width=640, height=360,
                model="truth", provider="test", latency_ms=200.0, detections=people, published_ts=EPOCH + t + 0.2))
    bus.redis.xadd(DETECTIONS_STREAM, {b"m": b"not a message"})
    bus.close()
    reply = subprocess.run([sys.executable, "-m", "hybridcam", "director-eval", "--run", redis_server.url, "--run-site", str(site),
                            "--out", str(tmp_path / "eval"), "--json"], capture_output=True, text=True, timeout=120)
    assert reply.returncode == 0, reply.stderr[-2000:]
    assert "skipped 1 undecodable" in reply.stderr
    report = json.loads(reply.stdout.strip().splitlines()[-1])
    assert report["action"]["seconds"] == pytest.approx(seconds - 1 / fps + 0.2, abs=0.2)
    assert report["action"]["shots"] >= 4 and report["action"]["short_unforced"] == 0
    assert (tmp_path / "eval" / "run-recorded-contact-sheet.png").exists()


def test_director_eval_uses_the_frames_a_file_delivers_when_its_container_overstates_them(tmp_path: Path) -> None:
    """A real clip re-muxed into AVI whose header says 42 frames where the file holds 40 (tests/data/video/CREDITS.md).
    Its committed detection cache is what `director-eval` wrote when it ran NanoDet on every frame the file delivered."""
    clip = DATA / "arrival-overstated-count.avi"
    cache = DATA / "arrival-overstated-count.detections.nanodet.json"
    cached = json.loads(cache.read_text())
    assert all(len(frames) == 40 for frames in cached["cameras"].values()), "every frame the file delivered, once"
    reply = subprocess.run([sys.executable, "-m", "hybridcam", "director-eval", "--clip", str(clip), "--out", str(tmp_path), "--json"],
                           capture_output=True, text=True, timeout=300)
    assert reply.returncode == 0, reply.stderr[-2000:]
    assert "detecting" not in reply.stdout, "every camera's detections should come from the cache"
    assert "the container says 42 frames, the file delivers 40" in reply.stdout
    report = json.loads(reply.stdout.strip().splitlines()[-1])
    assert report["shots"] and report["action"]["seconds"] == pytest.approx(4.0, abs=0.15), report["action"]
