"""Run the director offline and measure its cut: shot lengths, cuts per minute, short shots,
how often the picture holds the action, time per camera and the virtual camera's pan
acceleration, beside the old "everyone visible" rule as a baseline. Writes a contact sheet
(one thumbnail per shot with its reason) as a PNG.

Sources:
  --clip FILE        a recorded video as a real rig: its full frame is the wide master, scaled
                     crops of it are the slaves (each with its covers region)
  --site FILE        a site whose cameras are recorded files (file:PATH[?crop=x0,y0,x1,y1])
  --synthetic NAME   the synthetic scene (walkthrough or crowd); its ground truth stands in
                     for the detections
  --run REDIS_URL    a recorded run: the detection sets a live run left on the Redis
                     'detections' stream, replayed at their publish times (needs --site)

For recorded files the edge model runs on every frame of every camera once; the results are
cached (--cache-dir) and reused. Director settings come from HYBRIDCAM_COMPOSITOR_* as live.

    hybridcam director-eval --clip one-by-one-person-detection.mp4 --out eval/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from services.compositor.contact_sheet import contact_sheet
from services.compositor.detection_cache import DetectionCache, cache_path, detect_every_frame, detection_sets
from services.compositor.director import Director
from services.compositor.director_choice import action_director, timing_from
from services.compositor.evaluation import evaluate, format_report
from services.compositor.recorded_rig import DEFAULT_SLAVE_REGIONS, crop_pixels, parse_file_source, probe_clip, rig_cameras, rig_site_yaml
from services.compositor.replay import TimedDetections
from services.compositor.settings import CompositorSettings
from shared.errors import ConfigError
from shared.schemas import Detection, DetectionSet
from shared.settings import load_settings
from shared.site_config import Coverage, Region, ResolvedCamera, load_site

EPOCH = 1_700_000_000.0
SYNTHETIC_EDGE_FPS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--clip", type=Path, help="a video file to build a real rig from (full frame = wide master, crops = slaves)")
    source.add_argument("--site", type=Path, help="a site file whose cameras are recorded files")
    source.add_argument("--synthetic", choices=["walkthrough", "crowd"], help="the synthetic scene, ground truth as detections")
    source.add_argument("--run", metavar="REDIS_URL", help="replay the detections stream a live run left in Redis (with --run-site)")
    parser.add_argument("--run-site", type=Path, help="the site file of the recorded run (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--slaves", type=int, default=3, choices=range(0, len(DEFAULT_SLAVE_REGIONS) + 1),
                        help="slaves of the rig built from --clip (default 3: left, right, centre)")
    parser.add_argument("--people", type=int, default=24, help="people in the synthetic crowd (default 24)")
    parser.add_argument("--seconds", type=float, default=0.0, help="evaluate only this much (default: the whole clip; synthetic: 120)")
    parser.add_argument("--labels", help="labels the director follows (default: HYBRIDCAM_COMPOSITOR_LABELS)")
    parser.add_argument("--fps", type=float, default=10.0, help="director ticks per second (default 10)")
    parser.add_argument("--model", default="nanodet", help="edge model for recorded files (default nanodet)")
    parser.add_argument("--cache-dir", type=Path, help="where detections are cached (default: beside the clip)")
    parser.add_argument("--out", type=Path, default=Path("director-eval"), help="folder for the contact sheet, report and rig site file")
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(CompositorSettings)
    labels = frozenset(n.strip() for n in (args.labels or settings.compositor_labels).split(",") if n.strip())
    start = EPOCH
    if args.synthetic:
        name, cameras, timed, seconds, picture_at = _synthetic(args)
    elif args.run:
        name, cameras, timed, start, seconds, picture_at = _recorded_run(args, settings)
    else:
        name, cameras, timed, seconds, picture_at = _recorded(args, settings, labels)
    new = evaluate(name, cameras, action_director(settings, cameras), timed, start, start + seconds, args.fps, labels)
    old = evaluate(name, cameras, Director(cameras, timing_from(settings)), timed, start, start + seconds, args.fps, labels)
    print(format_report(new, old))
    args.out.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(new, picture_at, args.out / f"{name}-contact-sheet.png", f"{name} (action director)")
    contact_sheet(old, picture_at, args.out / f"{name}-contact-sheet-old-rule.png", f"{name} (old rule: everyone visible)")
    report = {"action": new.as_dict(), "everyone_visible": old.as_dict(),
              "shots": [vars(s) for s in new.shots]}
    (args.out / f"{name}-report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"contact sheet -> {sheet}; report -> {args.out / f'{name}-report.json'}")
    if args.json:
        print(json.dumps(report))
    return 0


# -- recorded files ----------------------------------------------------------------------------------------


def _recorded(args: argparse.Namespace, settings: CompositorSettings, labels: frozenset[str]):
    if args.clip is not None:
        if not args.clip.exists():
            raise ConfigError(f"clip {args.clip} does not exist")
        cameras = rig_cameras(args.clip, slave_count=args.slaves)
        name = args.clip.stem
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}-site.yaml").write_text(rig_site_yaml(name, cameras), encoding="utf-8")
    else:
        site = load_site(args.site)
        cameras = site.resolved()
        name = site.site
    clips = {parse_file_source(c.source).path for c in cameras}
    if len(clips) != 1:
        raise ConfigError(f"director-eval needs every camera to come from one recorded file, got {len(clips)}")
    clip = clips.pop()
    _, _, fps, frames = probe_clip(clip)
    cache = DetectionCache(cache_path(clip, args.model, args.cache_dir), clip, args.model)
    detector = None
    timed: list[TimedDetections] = []
    delivered: int | None = None  # frames the file really holds: the detector ran on every one it delivered
    for camera in cameras:
        if not cache.has(camera):
            if detector is None:
                from vision.detectors import load_detector

                detector = load_detector(args.model, score_threshold=0.35)
            print(f"detecting on every frame of {camera.id} ({frames} frames, {args.model}); cached in {cache.path}", flush=True)
            cache.store(camera, detect_every_frame(camera, detector, labels | settings.watch_label_set, progress=_progress(frames)))
        per_frame = cache.frames(camera)
        delivered = min(delivered, len(per_frame)) if delivered is not None else len(per_frame)
        for detection_set in detection_sets(camera, per_frame, EPOCH, fps, args.model):
            timed.append(TimedDetections(detection_set.capture_ts, detection_set))
    if delivered is not None and delivered != frames:
        print(f"{clip.name}: the container says {frames} frames, the file delivers {delivered}; using the {delivered} it delivers",
              flush=True)
        frames = delivered
    seconds = frames / fps
    if args.seconds:
        seconds = min(seconds, args.seconds)
    by_id = {c.id: c for c in cameras}

    def picture_at(camera_id: str, t: float) -> np.ndarray | None:
        camera = by_id[camera_id]
        source = parse_file_source(camera.source)
        capture = cv2.VideoCapture(str(source.path))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(t * fps))
            ok, frame = capture.read()
        finally:
            capture.release()
        return crop_pixels(frame, source.crop) if ok else None

    return name, cameras, timed, seconds, picture_at


def _progress(total: int):
    def report(camera_id: str, index: int, elapsed: float) -> None:
        if index:
            print(f"  {camera_id}: {index}/{total} frames, {index / max(elapsed, 1e-6):.1f} fps", flush=True)
    return report


# -- a recorded run ----------------------------------------------------------------------------------------


def read_detection_stream(redis_url: str, camera_ids: set[str]) -> list[TimedDetections]:
    """Every detection set of the site's cameras on the 'detections' stream, timed by when it was published."""
    import redis

    from shared.stream_bus import DETECTIONS_STREAM, StreamBus

    bus = StreamBus(redis_url, give_up_after_s=5.0)
    try:
        entries = bus.read_all(DETECTIONS_STREAM)
    except redis.RedisError as error:
        raise ConfigError(f"cannot read the detections stream at {redis_url}: {error}") from None
    finally:
        bus.close()
    if bus.counters["undecodable"]:
        print(f"skipped {bus.counters['undecodable']} undecodable entries of the detections stream", file=sys.stderr)
    return [TimedDetections(entry.message.published_ts, entry.message) for entry in entries
            if isinstance(entry.message, DetectionSet) and entry.message.camera_id in camera_ids]


def _recorded_run(args: argparse.Namespace, settings: CompositorSettings):
    site_file = args.run_site or settings.site_file
    site = load_site(site_file)
    cameras = site.resolved()
    timed = read_detection_stream(args.run, {c.id for c in cameras})
    if not timed:
        raise ConfigError(f"no detection sets of site {site.site} on the detections stream at {args.run}")
    start = min(t.detections.capture_ts for t in timed)
    seconds = max(t.arrival_ts for t in timed) - start
    if args.seconds:
        seconds = min(seconds, args.seconds)
    print(f"recorded run: {len(timed)} detection sets over {seconds:.0f} s from {args.run}", file=sys.stderr)

    def picture_at(camera_id: str, t: float) -> np.ndarray | None:
        return None  # the run's pictures are not kept; the contact sheet shows the cut and its reasons

    return f"run-{site.site}", cameras, timed, start, seconds, picture_at


# -- synthetic scene ---------------------------------------------------------------------------------------


def synthetic_site(scenario: str, people: int = 24, width: int = 1920, height: int = 1080):
    """The default six-camera synthetic site; the crowd is many people wandering over the whole wide view."""
    from services.capture.synthetic_scene import SyntheticScene

    if scenario == "crowd":
        base = SyntheticScene.default_site(width=width, height=height)
        scene = SyntheticScene(list(base.cameras.values()), seed=11, people=people, scenario="wander")
    else:
        scene = SyntheticScene.default_site(scenario="walkthrough", width=width, height=height)
    cameras = []
    for cam in scene.cameras.values():
        covers = None
        if cam.role == "slave":
            r = cam.region
            covers = Coverage(master="wide", region=Region(x0=r.x0, y0=r.y0, x1=r.x1, y1=r.y1))
        cameras.append(ResolvedCamera(id=cam.camera_id, name=cam.camera_id, source="synthetic", role=cam.role, width=cam.width,
                                      height=cam.height, fps=15.0, cloud_sample_every=10, covers=covers))
    return scene, cameras


def ground_truth_detections(scene, cameras: list[ResolvedCamera], seconds: float, fps: float = SYNTHETIC_EDGE_FPS) -> list[TimedDetections]:
    timed = []
    for camera in cameras:
        for seq in range(int(seconds * fps) + 1):
            t = seq / fps
            people = [Detection(label="person", class_id=0, score=0.9, box=p.box) for p in scene.ground_truth(camera.id, t)
                      if p.visible_fraction >= 0.3]
            timed.append(TimedDetections(EPOCH + t, DetectionSet(
                camera_id=camera.id, seq=seq, frame_id=f"{camera.id}-{seq}", capture_ts=EPOCH + t, width=camera.width,
                height=camera.height, source="edge", model="ground-truth", provider="synthetic", latency_ms=0.0, detections=people)))
    return timed


def _synthetic(args: argparse.Namespace):
    scene, cameras = synthetic_site(args.synthetic, args.people)
    seconds = args.seconds or 120.0
    started = time.monotonic()
    timed = ground_truth_detections(scene, cameras, seconds)
    print(f"synthetic {args.synthetic}: ground truth of {len(cameras)} cameras for {seconds:.0f} s "
          f"in {time.monotonic() - started:.1f} s", file=sys.stderr)

    def picture_at(camera_id: str, t: float) -> np.ndarray:
        return scene.render(camera_id, t)

    return f"synthetic-{args.synthetic}", cameras, timed, seconds, picture_at


