"""Send the master frames that change what we know to the cloud path (Kinesis).

Reads the master cameras' frame streams through consumer group "sampler", pairs each frame with
the edge detector's result for it (by frame id, waiting a bounded time), lets the sampling policy
decide (HYBRIDCAM_SAMPLER_POLICY: adaptive by default, or every_nth), encodes the chosen frames as
JPEG and puts them on Kinesis as CloudFrame records (aiobotocore, batched, retried). A frame entry
is acknowledged only after its record was accepted by Kinesis or written to the on-disk spool, or
once it was counted as deliberately skipped (by reason); the spool is replayed in order when the
cloud answers again. Counters go to the health stream and, when configured, to a JSON file for
`hybridcam cost --from-run`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from services.sampler.policy import EveryNthFrame, SamplingPolicy
from services.sampler.service import Sampler, build_policy, open_sampler
from services.sampler.settings import SamplerSettings
from shared.errors import ConfigError
from shared.metrics import service_registry
from shared.service_lifecycle import ServiceLifecycle, add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--stream-name", help="Kinesis stream (default: HYBRIDCAM_SAMPLER_STREAM_NAME)")
    parser.add_argument("--counters-file", type=Path, help="write run counters JSON here (default: HYBRIDCAM_SAMPLER_COUNTERS_FILE)")


async def sample_until_stopped(service: ServiceLifecycle[SamplerSettings], policy: SamplingPolicy) -> Sampler:
    async with open_sampler(service.settings, service.site, policy) as sampler:
        service.watch_progress(sampler.progress)
        service.serve_health(lambda: {"service": "sampler", "state": sampler.state(), "message": sampler.message(),
                                      "policy": sampler.policy.describe(), "counters": sampler.snapshot()},
                             service_registry(lambda: [sampler.health()]))
        await sampler.run(service.stop)
    return sampler


def run(args: argparse.Namespace) -> int:
    with ServiceLifecycle.start("sampler", SamplerSettings, args, sampler_stream_name=args.stream_name,
                                sampler_counters_file=args.counters_file) as service:
        settings, site, log = service.settings, service.site, service.log
        if not settings.sampler_stream_name:
            raise ConfigError("no Kinesis stream: set HYBRIDCAM_SAMPLER_STREAM_NAME (the stack's StreamName output) or pass --stream-name")
        masters = site.masters()
        if not masters:
            raise ConfigError(f"site {site.site!r} has no master camera, so there is nothing to sample")
        policy = build_policy(settings, site)
        what = (", ".join(f"{c.id} every {c.cloud_sample_every}th frame" for c in masters) if isinstance(policy, EveryNthFrame)
                else f"{', '.join(c.id for c in masters)} by policy {policy.describe()}")
        log.info("sampling %s to Kinesis stream %s (JPEG quality %d%s); spool %s (at most %d records)",
                 what, settings.sampler_stream_name,
                 settings.sampler_jpeg_quality, f", longer side <= {settings.sampler_max_side}" if settings.sampler_max_side else "",
                 settings.sampler_spool_dir, settings.sampler_spool_max_records)
        if settings.sampler_claim_check_bucket:
            log.info("frames over %d bytes go by claim check to s3://%s/%s", settings.sampler_record_limit_bytes,
                     settings.sampler_claim_check_bucket, settings.sampler_claim_check_prefix)
        sampler = asyncio.run(sample_until_stopped(service, policy))
        counters = sampler.snapshot()
        log.info("stopped: %d frames seen, %d sampled, %d saved, %d records sent (%.1f MB), %d spooled, %d dropped, "
                 "%d still in the spool", counters["frames_seen"], counters["frames_sampled"], counters["frames_saved"],
                 counters["records_sent"], counters["bytes_sent"] / 1e6,
                 counters["spooled"], counters["dropped"], counters["spool_depth"])
    return 0
