"""Entry point of the sampler: settings, logging and the run loop (the service itself is in service.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from pathlib import Path

from services.sampler.service import run_sampler
from services.sampler.settings import SamplerSettings
from shared.errors import ConfigError
from shared.logs import configure_logging
from shared.settings import load_settings
from shared.site_config import load_site

log = logging.getLogger("sampler")

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site file (default: HYBRIDCAM_SITE_FILE)")
    parser.add_argument("--redis-url", help="Redis URL (default: HYBRIDCAM_REDIS_URL)")
    parser.add_argument("--stream-name", help="Kinesis stream (default: HYBRIDCAM_SAMPLER_STREAM_NAME)")
    parser.add_argument("--counters-file", type=Path, help="write run counters JSON here (default: HYBRIDCAM_SAMPLER_COUNTERS_FILE)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until stopped)")
    parser.add_argument("--health-port", type=int, help="serve GET /health on this port")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        SamplerSettings,
        site_file=args.site,
        redis_url=args.redis_url,
        sampler_stream_name=args.stream_name,
        sampler_counters_file=args.counters_file,
        health_port=args.health_port,
    )
    configure_logging("sampler", settings.log_level)
    if not settings.sampler_stream_name:
        raise ConfigError("no Kinesis stream: set HYBRIDCAM_SAMPLER_STREAM_NAME (the stack's StreamName output) or pass --stream-name")
    site = load_site(settings.site_file)
    masters = site.masters()
    if not masters:
        raise ConfigError(f"site {site.site!r} has no master camera, so there is nothing to sample")
    log.info("sampling %s to Kinesis stream %s (JPEG quality %d%s); spool %s (at most %d records)",
             ", ".join(f"{c.id} every {c.cloud_sample_every}th frame" for c in masters), settings.sampler_stream_name,
             settings.sampler_jpeg_quality, f", longer side <= {settings.sampler_max_side}" if settings.sampler_max_side else "",
             settings.sampler_spool_dir, settings.sampler_spool_max_records)
    if settings.sampler_claim_check_bucket:
        log.info("frames over %d bytes go by claim check to s3://%s/%s", settings.sampler_record_limit_bytes,
                 settings.sampler_claim_check_bucket, settings.sampler_claim_check_prefix)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    sampler = asyncio.run(run_sampler(settings, site, stop))
    counters = sampler.snapshot()
    log.info("stopped: %d frames seen, %d sampled, %d records sent (%.1f MB), %d spooled, %d dropped, %d still in the spool",
             counters["frames_seen"], counters["frames_sampled"], counters["records_sent"], counters["bytes_sent"] / 1e6,
             counters["spooled"], counters["dropped"], counters["spool_depth"])
    return 0
