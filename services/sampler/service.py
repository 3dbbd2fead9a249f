"""The sampler service: frame entries -> sampling policy -> JPEG -> Kinesis (or the spool) -> acknowledge.

A frame entry is acknowledged only after its record was accepted by Kinesis or written to the
on-disk spool; the spool is replayed in order when the cloud answers again. Counters go to the
health stream and, when configured, to a JSON file for `hybridcam cost --from-run`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from services.sampler.encoding import FrameEncoder
from services.sampler.face_candidates import FaceCandidates
from services.sampler.kinesis_sender import ClaimCheck, CloudUnavailable, KinesisSender, OutgoingRecord
from services.sampler.policy import EveryNthFrame, SamplingPolicy
from services.sampler.settings import SamplerSettings
from services.sampler.spool import Spool
from shared.frame_ring import FrameFetcher, FrameGone
from shared.result_counters import CLOUD_RESULT_COUNTERS_KEY
from shared.schemas import CloudFrame, FrameRef, Health, HealthState
from shared.site_config import ResolvedCamera, SiteConfig
from shared.stream_bus import HEALTH_STREAM, StreamBus, StreamEntry, frames_stream

log = logging.getLogger("sampler")

COUNTER_NAMES = ("frames_seen", "frames_sampled", "records_sent", "bytes_sent", "spooled", "dropped")


class Sampler:
    """The loop: frame entries -> policy -> JPEG -> Kinesis (or the spool) -> acknowledge."""

    def __init__(self, settings: SamplerSettings, site: SiteConfig, bus: StreamBus, sender: KinesisSender,
                 spool: Spool, policy: SamplingPolicy, encoder: FrameEncoder) -> None:
        self.settings = settings
        self.site = site
        self.bus = bus
        self.sender = sender
        self.spool = spool
        self.policy = policy
        self.encoder = encoder
        self.fetcher = FrameFetcher()
        self.face_candidates = FaceCandidates(bus.redis, settings.sampler_face_min_px) if settings.sampler_face_watch else None
        self.cameras: dict[str, ResolvedCamera] = {frames_stream(c.id): c for c in site.masters()}
        self.counters: Counter[str] = Counter()
        self.cloud_retry_at = 0.0
        self.cloud_down_reason = ""
        self.started = time.time()
        self._last_report = 0.0
        self._last_claim = 0.0

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: threading.Event) -> None:
        group = self.settings.sampler_group
        for stream in self.cameras:
            self.bus.ensure_group(stream, group, "0")
        while not stop.is_set():
            entries = await asyncio.to_thread(
                self.bus.read_group, list(self.cameras), group, self.settings.sampler_consumer, 100, 250, "0")
            entries += self._claim_stale()
            await self.handle(entries)
            await self.replay_spool()
            self.report()
        self.report(force=True)

    def _claim_stale(self) -> list[StreamEntry]:
        now = time.monotonic()
        if now - self._last_claim < self.settings.sampler_claim_idle_ms / 2000:
            return []
        self._last_claim = now
        claimed: list[StreamEntry] = []
        for stream in self.cameras:
            claimed += self.bus.claim_stale(stream, self.settings.sampler_group, self.settings.sampler_consumer,
                                            self.settings.sampler_claim_idle_ms)
        return claimed

    async def handle(self, entries: list[StreamEntry]) -> None:
        outgoing: list[OutgoingRecord] = []
        finished: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            self.counters["frames_seen"] += 1
            record = self.record_of(entry)
            if record is None:
                finished[entry.stream].append(entry.entry_id)
            else:
                outgoing.append(record)
        if outgoing:
            await self.forward(outgoing)
            for record in outgoing:
                stream, entry_id = record.token
                finished[stream].append(entry_id)
        for stream, entry_ids in finished.items():
            self.bus.ack(stream, self.settings.sampler_group, entry_ids)

    def record_of(self, entry: StreamEntry) -> OutgoingRecord | None:
        """The Kinesis record for a sampled frame; None for frames not sampled (or gone)."""
        camera = self.cameras.get(entry.stream)
        ref = entry.message
        if camera is None or not isinstance(ref, FrameRef) or not self.policy.should_send(camera, ref):
            return None
        try:
            pixels = self.fetcher.fetch(ref)
        except (FrameGone, ValueError) as error:
            self.counters["frames_gone"] += 1
            log.debug("sampled frame %s is gone: %s", ref.frame_id, error)
            return None
        encoded = self.encoder.encode(pixels)
        frame = CloudFrame(site=self.site.site, frame_id=ref.frame_id, camera_id=ref.camera_id, seq=ref.seq,
                           capture_ts=ref.capture_ts, width=encoded.width, height=encoded.height, jpeg=encoded.jpeg,
                           face_candidate=self.face_candidates is not None and self.face_candidates.marks(ref))
        self.counters["frames_sampled"] += 1
        self.counters["face_candidates"] += frame.face_candidate
        return OutgoingRecord(ref.camera_id, frame.encode(), token=(entry.stream, entry.entry_id))

    async def forward(self, records: list[OutgoingRecord]) -> None:
        """Send now, or spool behind what is already waiting (so order is kept)."""
        if len(self.spool) or time.monotonic() < self.cloud_retry_at:
            self.to_spool(records)
            return
        try:
            await self.sender.send(records)
        except CloudUnavailable as error:
            self.cloud_unreachable(error.reason)
            self.to_spool(error.unsent)

    async def replay_spool(self) -> None:
        while len(self.spool) and time.monotonic() >= self.cloud_retry_at:
            batch = self.spool.oldest(self.settings.sampler_batch_records, self.settings.sampler_batch_bytes)
            try:
                await self.sender.send(batch)
            except CloudUnavailable as error:
                self.spool.remove(error.accepted)
                self.counters["replayed"] += len(error.accepted)
                self.cloud_unreachable(error.reason)
                return
            self.spool.remove(batch)
            self.counters["replayed"] += len(batch)
            if not len(self.spool):
                log.info("cloud reachable again: spool replayed (%d records so far)", self.counters["replayed"])
                self.cloud_down_reason = ""

    def to_spool(self, records: list[OutgoingRecord]) -> None:
        self.spool.extend(records)

    def cloud_unreachable(self, reason: str) -> None:
        if not self.cloud_down_reason:
            log.warning("cloud unreachable (%s); spooling to %s, retrying every %.1f s",
                        reason, self.spool.directory, self.settings.sampler_cloud_retry_s)
        self.cloud_down_reason = reason
        self.cloud_retry_at = time.monotonic() + self.settings.sampler_cloud_retry_s

    # -- counters ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, float]:
        sender = self.sender.counters
        values: dict[str, float] = {
            **self.counters, **sender,
            "spooled": self.spool.spooled, "dropped": self.spool.dropped + sender["dropped_oversized"],
            "spool_depth": len(self.spool), "spool_bytes": self.spool.bytes,
            "uptime_s": round(time.time() - self.started, 3), "master_cameras": len(self.cameras),
        }
        return {name: float(values.get(name, 0)) for name in sorted(set(values) | set(COUNTER_NAMES))}

    def state(self) -> HealthState:
        return "degraded" if self.cloud_down_reason or len(self.spool) else "ok"

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.settings.sampler_health_interval_s:
            return
        self._last_report = now
        health = self.health()
        self.bus.publish(HEALTH_STREAM, health)
        if self.settings.sampler_counters_file is not None:
            write_run_counters(self.settings.sampler_counters_file, self.run_counters(health.counters))

    def health(self) -> Health:
        message = f"cloud unreachable: {self.cloud_down_reason}" if self.cloud_down_reason else ""
        return Health(service="sampler", instance=self.settings.sampler_consumer, state=self.state(),
                      message=message[:200], counters=self.snapshot())

    def run_counters(self, counters: dict[str, float]) -> dict[str, Any]:
        """The `hybridcam cost --from-run` format (docs/cost.md), plus the sampler's own counters."""
        records = int(counters["records_sent"])
        alerts = self.bus.read_counter(CLOUD_RESULT_COUNTERS_KEY, "alerts")
        return {
            "frames_sampled": int(counters["frames_sampled"]),
            "bytes_sent": int(counters["bytes_sent"]),
            "records_sent": records,
            "handler_invocations": math.ceil(records / self.settings.sampler_lambda_batch_size),
            "handler_invocations_estimated": True,
            "alerts": alerts,
            "duration_s": max(time.time() - self.started, 0.001),
            "cameras": max(1, len(self.cameras)),
            **{name: int(value) for name, value in counters.items()
               if name not in ("records_sent", "bytes_sent", "frames_sampled", "uptime_s", "master_cameras")},
        }

    def close(self) -> None:
        self.fetcher.close()


def write_run_counters(path: Path, counters: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(counters, indent=1) + "\n")
    os.replace(temporary, path)


@asynccontextmanager
async def open_sampler(settings: SamplerSettings, site: SiteConfig) -> AsyncIterator[Sampler]:
    """The sampler with its Kinesis and S3 clients, spool, bus and encoder; all closed on leaving."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(connect_timeout=settings.sampler_connect_timeout_s, read_timeout=10,
                       retries={"total_max_attempts": 1, "mode": "standard"})
    session = get_session()
    async with session.create_client("kinesis", region_name=settings.sampler_region, config=config) as kinesis, \
            session.create_client("s3", region_name=settings.sampler_region, config=config) as s3:
        claim_check = ClaimCheck(s3, settings.sampler_claim_check_bucket, settings.sampler_claim_check_prefix,
                                 settings.sampler_record_limit_bytes)
        sender = KinesisSender(kinesis, settings.sampler_stream_name, claim_check, settings.sampler_batch_records,
                               settings.sampler_batch_bytes, settings.sampler_max_attempts,
                               settings.sampler_backoff_base_s, settings.sampler_backoff_cap_s)
        spool = Spool(settings.sampler_spool_dir, settings.sampler_spool_max_records, settings.sampler_spool_max_bytes)
        if len(spool):
            log.info("spool holds %d records from an earlier run; they go first", len(spool))
        bus = StreamBus(settings.redis_url, maxlen=settings.stream_maxlen)
        encoder = FrameEncoder(settings.sampler_jpeg_quality, settings.sampler_max_side, settings.sampler_max_jpeg_bytes)
        sampler = Sampler(settings, site, bus, sender, spool, EveryNthFrame(), encoder)
        try:
            yield sampler
        finally:
            sampler.close()
            bus.close()
