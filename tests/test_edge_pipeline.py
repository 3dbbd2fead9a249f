"""End to end: synthetic cameras -> capture -> Redis Streams -> edge_infer, with real processes."""

from __future__ import annotations

import signal
import time

from services.capture.scene_builder import build_scene
from shared.site_config import load_site
from shared.stream_bus import StreamBus
from tests.fixtures.pipeline import detection_sets, wait_until


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_person_recall_on_the_synthetic_scene(services, redis_server) -> None:
    services.start("capture")
    services.start("edge-infer")
    bus = StreamBus(redis_server.url)
    # Count frames the detector ran on: with motion-aware scheduling most sets carry tracked boxes.
    assert wait_until(lambda: sum(not s.tracked for s in detection_sets(bus)) >= 60, 90), services.logs()
    services.stop_all()

    site = load_site(services.env["HYBRIDCAM_SITE_FILE"])
    scene = build_scene(site, site.resolved())
    fps = {c.id: c.fps for c in site.resolved()}
    found = total = 0
    for result in detection_sets(bus):
        people = [d.box for d in result.detections if d.label == "person"]
        truth = scene.ground_truth(result.camera_id, result.seq / fps[result.camera_id])
        for person in truth:
            x1, y1, x2, y2 = person.box
            if y2 - y1 <= 60 or person.visible_fraction < 0.9:
                continue
            total += 1
            found += any(_iou(person.box, box) >= 0.4 for box in people)
    assert total >= 30, f"too few ground-truth people to measure recall ({total})"
    recall = found / total
    print(f"person recall {recall:.3f} over {total} ground-truth people")
    assert recall >= 0.8


def test_edge_infer_killed_and_restarted_loses_and_duplicates_nothing(services, redis_server) -> None:
    bus = StreamBus(redis_server.url)
    services.start("capture")
    first = services.start("edge-infer", name="edge-first")
    assert wait_until(lambda: len(detection_sets(bus)) >= 20, 60), services.logs()
    first.send_signal(signal.SIGKILL)
    first.wait()
    before_kill = {r.frame_id for r in detection_sets(bus)}
    killed_at = time.time()

    services.start("edge-infer", name="edge-second")
    assert wait_until(lambda: any(r.capture_ts > killed_at + 1 for r in detection_sets(bus)), 60), services.logs()
    time.sleep(2)
    services.stop_all()

    results = detection_sets(bus)
    ids = [r.frame_id for r in results]
    assert len(ids) == len(set(ids)), "a frame was published twice"
    assert before_kill <= set(ids), "a detection set published before the kill disappeared"
    pending = bus.redis.xpending("frames:wide", "edge_infer")["pending"]
    assert pending <= 2  # the restarted instance took over what the dead one left


def test_services_ride_out_a_redis_restart(services, redis_server) -> None:
    bus = StreamBus(redis_server.url)
    services.start("capture")
    services.start("edge-infer")
    assert wait_until(lambda: len(detection_sets(bus)) >= 10, 60), services.logs()
    redis_server.restart(down_for_s=2.0)
    back_at = time.time()
    assert wait_until(lambda: any(r.capture_ts > back_at + 1 for r in detection_sets(bus)), 60), services.logs()
    assert all(p.poll() is None for p in services.processes), services.logs()
