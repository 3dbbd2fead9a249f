"""Detect objects in real time on the newest frame of each camera with ONNX Runtime.

The back-end is chosen at start and logged with the reason: TensorRT -> CUDA through onnxruntime
when it offers a GPU, else on the CPU the back-end, precision and requests a short timed probe found
fastest on this machine (cached per machine and model);
HYBRIDCAM_EDGE_BACKEND / HYBRIDCAM_EDGE_PRECISION force one. Several requests run in flight. Frames arrive as
shared-memory references; a frame that is stale, overwritten or corrupt is skipped and
counted, never queued. Detections and the acknowledgement of their frame are written in
one Redis transaction, so a restart neither loses nor duplicates results. With HYBRIDCAM_EDGE_POSE=crops
(or frame), tracked people also get MoveNet keypoints and actions (fall, lying, running, loitering,
hands raised) on their detections: docs/actions.md.
"""

from __future__ import annotations

import argparse

from services.edge_infer.backend_probe import measured_choice
from services.edge_infer.detector_pool import DetectorPool, open_pool
from services.edge_infer.inference_loop import InferenceLoop
from services.edge_infer.motion_schedule import MotionScheduler
from services.edge_infer.pose_stage import PoseStage
from services.edge_infer.settings import EdgeInferSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.stream_bus import StreamBus, frames_stream
from vision.actions import ActionClassifier
from vision.detectors.base import ModelLoadError
from vision.detectors.registry import (
    DEFAULT_MODELS_DIR,
    TILED_NAME,
    build_detector,
    load_detector,
    parse_detector_config,
    resolve_model_path,
)
from vision.pose import MULTI_POSE_MODEL, SINGLE_POSE_MODEL, MultiPoseModel, SinglePoseModel
from vision.providers import choose_providers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--model", help="model name or .onnx path (default: HYBRIDCAM_EDGE_MODEL, nanodet)")
    parser.add_argument("--camera", action="append", default=[], help="analyse only this camera id (repeatable)")


def build_detectors(settings: EdgeInferSettings) -> DetectorPool:
    """The detector pool: HYBRIDCAM_EDGE_DETECTOR (typed settings) or the tiled pair on the onnxruntime chain, else
    HYBRIDCAM_EDGE_MODEL on the back-end chosen (or forced) for this machine, with its requests in flight."""
    allowed = [p.strip() for p in settings.edge_providers.split(",") if p.strip()] or None
    threads = settings.edge_threads or None
    what = settings.edge_detector or settings.edge_model
    try:
        if settings.edge_detector or settings.edge_model == TILED_NAME:
            providers = choose_providers(allowed, settings.edge_trt_cache_dir, settings.edge_fp16)
            if settings.edge_detector:
                return DetectorPool([build_detector(parse_detector_config(settings.edge_detector), providers,
                                                    intra_op_num_threads=threads)])
            return DetectorPool([load_detector(TILED_NAME, providers, intra_op_num_threads=threads,
                                               score_threshold=settings.edge_score_threshold)])
        choice = measured_choice(
            resolve_model_path(settings.edge_model, DEFAULT_MODELS_DIR),
            settings.edge_backend,
            settings.edge_precision,
            requests=settings.edge_requests,
            threads=settings.edge_threads,
            probe_s=settings.edge_probe_s,
            cache_dir=settings.edge_probe_cache_dir,
            allowed_providers=allowed,
            trt_cache_dir=settings.edge_trt_cache_dir,
            fp16=settings.edge_fp16,
        )
        return open_pool(choice, score_threshold=settings.edge_score_threshold)
    except (ModelLoadError, ValueError, FileNotFoundError) as error:
        raise ConfigError(f"cannot load model {what!r}: {error}") from None


def build_pose_stage(settings: EdgeInferSettings) -> PoseStage | None:
    """The pose and action stage HYBRIDCAM_EDGE_POSE asks for (None when off)."""
    if settings.edge_pose == "off":
        return None
    allowed = [p.strip() for p in settings.edge_providers.split(",") if p.strip()] or None
    providers = choose_providers(allowed, settings.edge_trt_cache_dir, settings.edge_fp16)
    threads = settings.edge_threads or None
    try:
        model: SinglePoseModel | MultiPoseModel = (
            SinglePoseModel(DEFAULT_MODELS_DIR / f"{SINGLE_POSE_MODEL}.onnx", providers, threads)
            if settings.edge_pose == "crops" else MultiPoseModel(DEFAULT_MODELS_DIR / f"{MULTI_POSE_MODEL}.onnx", providers, threads))
    except ModelLoadError as error:
        raise ConfigError(f"cannot load the pose model: {error}") from None
    return PoseStage(model, ActionClassifier(settings.action_thresholds()), settings.edge_pose_rate_hz,
                     settings.edge_pose_max_people, settings.edge_pose_min_height_px)


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("edge_infer", EdgeInferSettings, args, edge_model=args.model) as service:
        settings, site, log = service.settings, service.site, service.log
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
        frame_bus = StreamBus(settings.frames_redis_url, maxlen=settings.stream_maxlen) if settings.frames_redis_url else bus
        streams = [frames_stream(c.id) for c in cameras]
        metrics = service_registry(lambda: [loop.health()], frame_bus.stream_collector(lambda: streams))
        scenes = {c.id: site.scene(c.id) for c in cameras}
        scenes = {c: scene for c, scene in scenes.items() if scene.masks or scene.filters}  # the rest pay nothing
        scheduler = MotionScheduler(pool.size, settings.edge_floor_fps, masks={c: s.masks for c, s in scenes.items()}) \
            if settings.edge_schedule == "motion" else None
        log.info("schedule: %s", f"motion-aware ({settings.edge_floor_fps:g} fps floor for still cameras, "
                 f"{pool.size} frame(s) a round, tracked boxes on skipped frames)" if scheduler else "every camera's newest frame")
        pose_stage = build_pose_stage(settings)
        if pose_stage is not None:
            log.info("pose stage: %s, at most %d people a frame, %.3g poses/s per person; actions: %s",
                     pose_stage.model.model_path.stem, settings.edge_pose_max_people, settings.edge_pose_rate_hz,
                     "fall, lying, running, loitering, hands raised")
        loop = InferenceLoop(
            frame_bus, pool, streams, settings.edge_group, settings.edge_consumer,
            settings.edge_max_frame_age_ms, settings.edge_claim_idle_ms, metrics, scheduler, scenes, pose_stage,
            results_bus=bus,
        )
        service.close_with(lambda: log.info(
            "stopped after %.1f s: %d frames analysed, %d skipped", service.elapsed_s,
            sum(c.analysed for c in loop.counters.values()), sum(c.skipped for c in loop.counters.values())))
        service.close_with(loop.close)
        service.watch_progress(loop.progress)
        service.serve_health(lambda: {"service": "edge_infer", **loop.health().model_dump()}, metrics)
        loop.run(service.stop)
    return 0
