"""Bring cloud detections back from the results queue (SQS) onto the edge detection stream.

Long-polls the queue, turns each CloudResult into a DetectionSet with source "cloud" and writes
it to the detections stream together with a per-frame-id key (with a TTL) in one Redis
transaction, so a result delivered twice (SQS is at-least-once) is published once. A message is
deleted from the queue only after its stream write succeeded. A malformed body is logged,
counted, copied to the dead-letter stream and deleted.
"""

from __future__ import annotations

import argparse

from services.results_bridge.service import PollInterrupted, ResultsBridge, sqs_client
from services.results_bridge.settings import BridgeSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments
from shared.stream_bus import DETECTIONS_STREAM, StreamBus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--queue-url", help="SQS results queue (default: HYBRIDCAM_BRIDGE_QUEUE_URL)")
    parser.add_argument("--wait-time", type=int, help="long-poll seconds, 0-20 (default: HYBRIDCAM_BRIDGE_WAIT_TIME_S, 20)")


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("results_bridge", BridgeSettings, args, bridge_queue_url=args.queue_url,
                                bridge_wait_time_s=args.wait_time) as service:
        settings, log = service.settings, service.log
        if not settings.bridge_queue_url:
            raise ConfigError("no results queue: set HYBRIDCAM_BRIDGE_QUEUE_URL (the stack's ResultsQueueUrl output) or pass --queue-url")
        site = service.site
        log.info("bringing cloud results from %s (long poll %d s) to stream %s as source=cloud; duplicates dropped for %d s",
                 settings.bridge_queue_url, settings.bridge_wait_time_s, DETECTIONS_STREAM, settings.bridge_dedup_ttl_s)
        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        bridge = ResultsBridge(settings, site, bus, sqs_client(settings))

        def interrupt_poll() -> None:
            if bridge.polling:
                raise PollInterrupted()

        service.on_signal(interrupt_poll)
        service.serve_health(lambda: {"service": "results_bridge", "state": bridge.state()[0], "message": bridge.state()[1],
                                      "counters": bridge.snapshot()},
                             service_registry(lambda: [bridge.health()]))
        service.watch_progress(bridge.progress)
        service.close_with(bus.close)
        service.close_with(lambda: log.info(
            "stopped: %(received)d results received, %(published)d published, %(duplicates)d duplicates, %(malformed)d malformed",
            bridge.snapshot()))
        bridge.run(service.stop)
    return 0
