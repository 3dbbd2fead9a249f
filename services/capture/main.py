"""Read every camera of the site, stamp each frame and publish it on Redis Streams.

Pixels go into a per-camera shared-memory ring; the stream frames:<camera> carries only
a reference (ring, slot, sequence, capture time). One process runs all cameras of this
host, a thread each: OpenCV decoding, resizing and the synthetic renderer release the
GIL, so threads use both cores without a process per camera, and one process keeps
one health report. Run one process per camera with --camera when isolation matters.
"""

from __future__ import annotations

import argparse
from functools import partial

from services.capture.camera_worker import CameraWorker
from services.capture.scene_builder import build_scene
from services.capture.settings import CaptureSettings
from services.capture.sources import NetworkTimeouts, open_source, use_rtsp_transport
from shared.errors import ConfigError
from shared.frame_ring import (
    FrameMemoryFull,
    check_shared_memory,
    ring_bytes,
    ring_name,
    ring_namespace,
    ring_span_s,
    shared_memory_free_bytes,
)
from shared.metrics import service_registry
from shared.progress import Progress
from shared.schemas import HealthState
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.settings import redacted_url
from shared.site_config import ResolvedCamera, SiteConfig
from shared.stream_bus import HEALTH_STREAM, StreamBus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--camera", action="append", default=[], help="run only this camera id (repeatable)")


def select_cameras(site: SiteConfig, wanted: list[str]) -> list[ResolvedCamera]:
    cameras = site.resolved()
    if not wanted:
        return cameras
    unknown = sorted(set(wanted) - {c.id for c in cameras})
    if unknown:
        raise ConfigError(f"camera(s) {', '.join(unknown)} not in site {site.site!r}")
    return [c for c in cameras if c.id in wanted]


def overall_state(states: list[HealthState]) -> HealthState:
    """The process's state from its cameras': failed when a camera thread is gone for good (a restart
    of the process is the cure), ok when all are ok, degraded while at least one delivers."""
    if "failed" in states:
        return "failed"
    if states and all(s == "ok" for s in states):
        return "ok"
    return "degraded" if any(s in ("ok", "degraded") for s in states) else "starting"


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("capture", CaptureSettings, args) as service:
        settings, site, log = service.settings, service.site, service.log
        cameras = select_cameras(site, args.camera or [c for c in settings.capture_cameras.split(",") if c])
        scene = build_scene(site, cameras)
        use_rtsp_transport(settings.capture_rtsp_transport)
        network = NetworkTimeouts(settings.capture_open_timeout_s, settings.capture_read_timeout_s)
        sources = {camera.id: open_source(camera, scene, network) for camera in cameras}
        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        frame_bus = StreamBus(settings.frames_redis_url, maxlen=settings.stream_maxlen) if settings.frames_redis_url else bus
        quality = settings.capture_jpeg_quality if settings.capture_inline_jpeg else None
        namespace = ring_namespace(settings.frame_bus_url)
        slots = {camera.id: settings.ring_slots(camera.fps) for camera in cameras}
        try:
            check_shared_memory({ring_name(c.id, namespace): ring_bytes(c.width, c.height, slots[c.id]) for c in cameras})
            workers = [
                CameraWorker(camera, sources[camera.id], frame_bus, service.stop, slots[camera.id], quality,
                             settings.capture_reconnect_max_s, namespace, site_bus=bus if frame_bus is not bus else None)
                for camera in cameras
            ]
        except FrameMemoryFull as error:
            raise ConfigError(str(error)) from None
        reused = [w.camera.id for w in workers if w.ring.reused]
        if reused:
            log.info("took over the frame rings a previous capture left for %s (readers re-attach)", ", ".join(reused))
        log.info("site %s: capturing %d camera(s) into Redis at %s", site.site, len(cameras), redacted_url(settings.redis_url))
        if frame_bus is not bus:
            log.info("frame references on this server's Redis at %s; the site Redis gets them with an inline JPEG%s",
                     redacted_url(settings.frames_redis_url), "" if quality else " (none: HYBRIDCAM_CAPTURE_INLINE_JPEG is off)")
        for camera in cameras:
            log.info("  %-12s %-6s %dx%d@%g  %s; ring %d frames (%.2f s, %.1f MiB)", camera.id, camera.role, camera.width,
                     camera.height, camera.fps, sources[camera.id].description, slots[camera.id],
                     ring_span_s(slots[camera.id], camera.fps), ring_bytes(camera.width, camera.height, slots[camera.id]) / 2**20)

        def snapshot() -> dict:
            healths = [w.health() for w in workers]
            return {"service": "capture", "state": overall_state([h.state for h in healths]),
                    "shared_memory_free_bytes": shared_memory_free_bytes(),
                    "cameras": {h.camera_id: h.model_dump() for h in healths}}

        service.serve_health(snapshot, service_registry(lambda: [w.health() for w in workers]))
        service.close_with(lambda: log.info("stopped after %.1f s: %d frames published", service.elapsed_s,
                                            sum(w.stats.frames for w in workers)))
        for worker in workers:
            service.close_with(partial(worker.join, timeout=5))
            worker.start()
        alive = Progress(stall_after_s=10.0, fail_after_s=30.0)  # beaten while no camera thread is stuck or gone
        bus.on_retry = alive.beat  # waiting for Redis is not being stuck
        service.watch_progress(alive)
        while not service.stop.wait(settings.capture_health_interval_s):
            healths = [worker.health() for worker in workers]
            if overall_state([h.state for h in healths]) != "failed":
                alive.beat()
            for health in healths:
                bus.publish(HEALTH_STREAM, health, maxlen=1000)
    return 0
