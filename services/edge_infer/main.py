"""Detect objects in real time on the newest frame of each camera with ONNX Runtime.

Execution providers are tried in the order TensorRT -> CUDA -> CPU among those this
onnxruntime build offers; the one that actually runs is logged. Frames arrive as
shared-memory references; a frame that is stale, overwritten or corrupt is skipped and
counted, never queued. Detections and the acknowledgement of their frame are written in
one Redis transaction, so a restart neither loses nor duplicates results.
"""

from __future__ import annotations

import argparse

from services.edge_infer.inference_loop import InferenceLoop
from services.edge_infer.settings import EdgeInferSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.stream_bus import StreamBus, frames_stream
from vision.detectors.base import Detector, ModelLoadError
from vision.detectors.registry import build_detector, load_detector, parse_detector_config
from vision.providers import ProviderChoice, choose_providers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--model", help="model name or .onnx path (default: HYBRIDCAM_EDGE_MODEL, nanodet)")
    parser.add_argument("--camera", action="append", default=[], help="analyse only this camera id (repeatable)")


def build_edge_detector(settings: EdgeInferSettings) -> tuple[Detector, ProviderChoice]:
    """The detector of HYBRIDCAM_EDGE_DETECTOR (typed settings) or else of HYBRIDCAM_EDGE_MODEL, on the best providers."""
    allowed = [p.strip() for p in settings.edge_providers.split(",") if p.strip()] or None
    threads = settings.edge_threads or None
    what = settings.edge_detector or settings.edge_model
    try:
        choice = choose_providers(allowed, settings.edge_trt_cache_dir, settings.edge_fp16)
        if settings.edge_detector:
            detector = build_detector(parse_detector_config(settings.edge_detector), choice, intra_op_num_threads=threads)
        else:
            detector = load_detector(settings.edge_model, choice, intra_op_num_threads=threads,
                                     score_threshold=settings.edge_score_threshold)
    except (ModelLoadError, ValueError, FileNotFoundError) as error:
        raise ConfigError(f"cannot load model {what!r}: {error}") from None
    return detector, choice


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("edge_infer", EdgeInferSettings, args, edge_model=args.model) as service:
        settings, site, log = service.settings, service.site, service.log
        wanted = args.camera or [c for c in settings.edge_cameras.split(",") if c]
        cameras = [c for c in site.resolved() if not wanted or c.id in wanted]
        if not cameras:
            raise ConfigError(f"no camera of site {site.site!r} matches {', '.join(wanted)}")
        detector, choice = build_edge_detector(settings)
        log.info("model %s; %s; running on %s", detector.name, choice.description, ", ".join(detector.providers))
        log.info("analysing %d camera(s): %s (newest frame only, stale after %.0f ms)",
                 len(cameras), ", ".join(c.id for c in cameras), settings.edge_max_frame_age_ms)

        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        streams = [frames_stream(c.id) for c in cameras]
        metrics = service_registry(lambda: [loop.health()], bus.stream_collector(lambda: streams))
        loop = InferenceLoop(
            bus, detector, streams, settings.edge_group, settings.edge_consumer,
            settings.edge_max_frame_age_ms, settings.edge_claim_idle_ms, metrics,
        )
        service.close_with(lambda: log.info(
            "stopped after %.1f s: %d frames analysed, %d skipped", service.elapsed_s,
            sum(c.analysed for c in loop.counters.values()), sum(c.skipped for c in loop.counters.values())))
        service.close_with(loop.close)
        service.watch_progress(loop.progress)
        service.serve_health(lambda: {"service": "edge_infer", **loop.health().model_dump()}, metrics)
        loop.run(service.stop)
    return 0
