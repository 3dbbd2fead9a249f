"""Entry point of the results bridge: settings, logging and the run loop (the service itself is in service.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from services.results_bridge.service import PollInterrupted, ResultsBridge, sqs_client
from services.results_bridge.settings import BridgeSettings
from shared.errors import ConfigError
from shared.health import HealthServer
from shared.logs import configure_logging
from shared.metrics import service_registry
from shared.settings import load_settings
from shared.site_config import load_site
from shared.stream_bus import DETECTIONS_STREAM, StreamBus

log = logging.getLogger("results_bridge")

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--queue-url", help="SQS results queue (default: HYBRIDCAM_BRIDGE_QUEUE_URL)")
    parser.add_argument("--wait-time", type=int, help="long-poll seconds, 0-20 (default: HYBRIDCAM_BRIDGE_WAIT_TIME_S, 20)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
    parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        BridgeSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        bridge_queue_url=args.queue_url,
        bridge_wait_time_s=args.wait_time,
        health_port=args.health_port,
    )
    configure_logging("results_bridge", settings.log_level)
    if not settings.bridge_queue_url:
        raise ConfigError("no results queue: set HYBRIDCAM_BRIDGE_QUEUE_URL (the stack's ResultsQueueUrl output) or pass --queue-url")
    site = load_site(settings.site_file)
    log.info("bringing cloud results from %s (long poll %d s) to stream %s as source=cloud; duplicates dropped for %d s",
             settings.bridge_queue_url, settings.bridge_wait_time_s, DETECTIONS_STREAM, settings.bridge_dedup_ttl_s)
    bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
    bridge = ResultsBridge(settings, site, bus, sqs_client(settings))
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        if bridge.polling:
            raise PollInterrupted()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    health_server = None
    if settings.health_port:
        health_server = HealthServer(settings.health_port, lambda: {
            "service": "results_bridge", "state": "ok", "counters": bridge.snapshot()},
            metrics=service_registry(lambda: [bridge.health()])).start()
    try:
        bridge.run(stop)
    finally:
        if health_server:
            health_server.stop()
        counters = bridge.snapshot()
        log.info("stopped: %d results received, %d published, %d duplicates, %d malformed",
                 counters["received"], counters["published"], counters["duplicates"], counters["malformed"])
        bus.close()
    return 0
