"""Detect objects in real time on the newest frame of each camera with ONNX Runtime.

The back-end is chosen at start and logged with the reason: TensorRT -> CUDA through onnxruntime
when it offers a GPU, else OpenVINO (or onnxruntime) on the CPU, int8 where the CPU has VNNI/AMX;
HYBRIDCAM_EDGE_BACKEND / HYBRIDCAM_EDGE_PRECISION force one. Several requests run in flight. Frames arrive as
shared-memory references; a frame that is stale, overwritten or corrupt is skipped and
counted, never queued. Detections and the acknowledgement of their frame are written in
one Redis transaction, so a restart neither loses nor duplicates results.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from services.edge_infer.detectors.base import ModelLoadError
from services.edge_infer.backend_choice import choose_backend
from services.edge_infer.detector_pool import DetectorPool, open_pool
from services.edge_infer.detectors.registry import DEFAULT_MODELS_DIR, TILED_NAME, load_detector, resolve_model_path
from services.edge_infer.providers import choose_providers
from services.edge_infer.inference_loop import InferenceLoop
from services.edge_infer.motion_schedule import MotionScheduler
from services.edge_infer.settings import EdgeInferSettings
from shared.errors import ConfigError
from shared.health import HealthServer
from shared.logs import configure_logging
from shared.metrics import StreamCollector, service_registry
from shared.settings import load_settings
from shared.site_config import load_site
from shared.stream_bus import StreamBus, frames_stream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--model", help="model name or .onnx path (default: HYBRIDCAM_EDGE_MODEL, nanodet)")
    parser.add_argument("--camera", action="append", default=[], help="analyse only this camera id (repeatable)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
    parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


def build_detectors(settings: EdgeInferSettings) -> DetectorPool:
    """The detector pool for the configured model on the back-end chosen (or forced) for this machine."""
    allowed = [p.strip() for p in settings.edge_providers.split(",") if p.strip()] or None
    try:
        if settings.edge_model == TILED_NAME:  # two models in one detector: the onnxruntime chain only
            providers = choose_providers(allowed, settings.edge_trt_cache_dir, settings.edge_fp16)
            return DetectorPool([load_detector(TILED_NAME, providers, intra_op_num_threads=settings.edge_threads or None,
                                               score_threshold=settings.edge_score_threshold)])
        choice = choose_backend(
            resolve_model_path(settings.edge_model, DEFAULT_MODELS_DIR),
            settings.edge_backend,
            settings.edge_precision,
            requests=settings.edge_requests,
            threads=settings.edge_threads,
            allowed_providers=allowed,
            trt_cache_dir=settings.edge_trt_cache_dir,
            fp16=settings.edge_fp16,
        )
        return open_pool(choice, score_threshold=settings.edge_score_threshold)
    except (ModelLoadError, ValueError, FileNotFoundError) as error:
        raise ConfigError(f"cannot load model {settings.edge_model!r}: {error}") from None


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        EdgeInferSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        edge_model=args.model,
        health_port=args.health_port,
    )
    log = configure_logging("edge_infer", settings.log_level)
    site = load_site(settings.site_file)
    wanted = args.camera or [c for c in settings.edge_cameras.split(",") if c]
    cameras = [c for c in site.resolved() if not wanted or c.id in wanted]
    if not cameras:
        raise ConfigError(f"no camera of site {site.site!r} matches {', '.join(wanted)}")
    pool = build_detectors(settings)
    detector = pool.first
    log.info("model %s running on %s; %s", detector.name, ", ".join(detector.providers),
             pool.choice.describe() if pool.choice else "")
    log.info("analysing %d camera(s): %s (newest frame only, stale after %.0f ms)",
             len(cameras), ", ".join(c.id for c in cameras), settings.edge_max_frame_age_ms)

    bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
    streams = [frames_stream(c.id) for c in cameras]
    metrics = service_registry(lambda: [loop.health()], StreamCollector(bus.redis, lambda: streams))
    scheduler = (MotionScheduler(pool.size, settings.edge_floor_fps) if settings.edge_schedule == "motion" else None)
    log.info("schedule: %s", f"motion-aware ({settings.edge_floor_fps:g} fps floor for still cameras, "
             f"{pool.size} frame(s) a round, tracked boxes on skipped frames)" if scheduler else "every camera's newest frame")
    loop = InferenceLoop(
        bus, pool, streams, settings.edge_group, settings.edge_consumer,
        settings.edge_max_frame_age_ms, settings.edge_claim_idle_ms, metrics, scheduler,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration:
        threading.Timer(args.duration, stop.set).start()

    def snapshot() -> dict:
        return {"service": "edge_infer", **loop.health().model_dump()}

    health_server = HealthServer(settings.health_port, snapshot, metrics=metrics).start() if settings.health_port else None
    started = time.monotonic()
    try:
        loop.run(stop)
    finally:
        loop.close()
        if health_server:
            health_server.stop()
        analysed = sum(c.analysed for c in loop.counters.values())
        skipped = sum(c.skipped for c in loop.counters.values())
        log.info("stopped after %.1f s: %d frames analysed, %d skipped", time.monotonic() - started, analysed, skipped)
    return 0
