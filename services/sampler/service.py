"""The sampler service: frame entries -> (edge result) -> sampling policy -> JPEG -> Kinesis (or the spool).

Each master frame is paired with the edge detector's result for it (by frame id, waiting a bounded
time), then the sampling policy decides (HYBRIDCAM_SAMPLER_POLICY: adaptive by default, or
every_nth). A frame entry is acknowledged only after its record was accepted by Kinesis or written
to the on-disk spool, or once it was counted as deliberately skipped (by reason); the spool is
replayed in order when the cloud answers again. Counters go to the health stream and, when
configured, to a JSON file for `hybridcam cost --from-run`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from services.sampler.catch_up import CatchUp
from services.sampler.confirmations import confirmation_records
from services.sampler.edge_pairing import EdgePairing
from services.sampler.encoding import FrameEncoder
from services.sampler.face_candidates import FaceCandidates
from services.sampler.heartbeat import HeartbeatSource
from services.sampler.kinesis_sender import ClaimCheck, CloudUnavailable, KinesisSender, OutgoingRecord, partition_key
from services.sampler.patch_sampler import PatchSampler
from services.sampler.patch_sender import PatchSender
from services.sampler.policy import (
    AdaptivePolicy,
    EveryNthFrame,
    FrameFacts,
    SamplingPolicy,
    Verdict,
    adaptive_settings_of,
    watch_labels_of,
)
from services.sampler.settings import SamplerSettings
from services.sampler.spool import Spool
from services.sampler.uplink_fit import UplinkFitter
from shared.errors import ConfigError
from shared.frame_ring import BorrowedFrame, FrameFetcher, FrameGone, ring_span_s
from shared.progress import Progress
from shared.result_counters import CLOUD_RESULT_COUNTERS_KEY
from shared.schemas import MAX_FRAME_TRACKS, CloudFrame, FrameRef, FrameTrack, Health, HealthState
from shared.site_config import ResolvedCamera, SiteConfig
from shared.stream_bus import CLOUD_REQUESTS_STREAM, HEALTH_STREAM, StreamBus, StreamEntry, frames_stream
from shared.uplink import ByteBudget, UplinkQuality, kbit_per_s_to_bytes

log = logging.getLogger("sampler")

COUNTER_NAMES = ("frames_seen", "frames_sampled", "frames_saved", "records_sent", "bytes_sent", "spooled", "dropped",
                 "frames_evaluated", "frames_not_evaluated")
Token = tuple[str, str]  # (stream, entry id) of a frame entry


def build_policy(settings: SamplerSettings, site: SiteConfig) -> SamplingPolicy:
    """The configured policy; a USD budget is turned into images with the price set's Rekognition price."""
    if settings.sampler_policy == "every_nth":
        return EveryNthFrame(per_camera={c.id: c.cloud_sample_every for c in site.masters()})
    usd_per_image = None
    if settings.sampler_budget_usd_per_hour:
        from cost_model.price_sets import PriceSetError, load_price_set

        try:
            item = load_price_set(settings.sampler_price_set).get("rekognition.detect_labels")
        except PriceSetError as error:
            raise ConfigError(str(error)) from None
        if item is None:
            raise ConfigError(f"price set {settings.sampler_price_set!r} has no Rekognition price for a USD budget")
        usd_per_image = item.first_rate
    return AdaptivePolicy(adaptive_settings_of(settings, usd_per_image), {c.id: site.scene(c.id).masks for c in site.masters()})


@dataclass
class WaitingFrame:
    """A master frame read from its stream, waiting (a bounded time) for its edge result."""

    entry: StreamEntry
    ref: FrameRef
    arrived: float
    read_lag_s: float = 0.0
    """capture to the sampler reading its stream entry: how far the sampler is behind (the edge wait comes after)"""


class Sampler:
    """The loop: frame entries -> (edge result) -> policy -> JPEG -> Kinesis (or the spool) -> acknowledge."""

    def __init__(self, settings: SamplerSettings, site: SiteConfig, bus: StreamBus, sender: KinesisSender,
                 spool: Spool, policy: SamplingPolicy, encoder: FrameEncoder, pairing: EdgePairing | None = None,
                 uplink: UplinkFitter | None = None, patches: PatchSender | None = None) -> None:
        self.settings = settings
        self.site = site
        self.bus = bus
        self.sender = sender
        self.spool = spool
        self.policy = policy
        self.encoder = encoder
        self.uplink = uplink
        self.patches = patches
        self.fetcher = FrameFetcher()
        self.face_candidates = FaceCandidates(bus, settings.sampler_face_min_px) if settings.sampler_face_watch else None
        self.cameras: dict[str, ResolvedCamera] = {frames_stream(c.id): c for c in site.masters()}
        self.pairing = pairing or EdgePairing([c.id for c in site.masters()], watch_labels_of(settings.sampler_watch_labels),
                                              (settings.sampler_unsure_low, settings.sampler_unsure_high),
                                              track_min_size=settings.sampler_track_min_size)
        self.tracking: list[str] = []
        self.counters: Counter[str] = Counter()
        self.waiting: dict[str, deque[WaitingFrame]] = {stream: deque() for stream in self.cameras}
        self.held: dict[Token, OutgoingRecord] = {}
        self.edge_silent: list[str] = []
        self.cloud_retry_at = 0.0
        self.cloud_down_reason = ""
        self.started = time.time()
        self._started_monotonic = time.monotonic()
        self._last_report = 0.0
        self._reported_state: HealthState | None = None
        self._last_claim = 0.0
        # A turn reads for at most a second, then decides and forwards: a forward to an unreachable
        # cloud takes its attempts and timeouts (about a minute at worst) before it spools. A Redis
        # outage counts as progress: the bus is retrying, and health says so on its own.
        self.progress = Progress(stall_after_s=90.0, fail_after_s=180.0)
        bus.on_retry = self.progress.beat
        self._current: dict[Token, tuple[FrameRef, BorrowedFrame | None]] = {}
        self.coverage = CoverageWindow()
        self.catch_up = CatchUp()
        self.fps = {c.id: c.fps for c in site.masters()}
        self._outbox: asyncio.Queue[list[OutgoingRecord] | None] | None = None
        self._tracks: dict[Token, list[FrameTrack]] = {}
        self.heartbeats = HeartbeatSource(bus, site.site, settings.sampler_heartbeat_interval_s, time.time,
                                          settings.sampler_heartbeat_server or None,
                                          {group.group: list(group.cameras) for group in site.placement})
        self.heartbeats.next_at = time.time() + settings.sampler_heartbeat_interval_s
        """the edge's tracked objects in the frames being decided (they travel with a sent frame)"""

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: threading.Event) -> None:
        group = self.settings.sampler_group
        for stream in self.cameras:
            self.bus.ensure_group(stream, group, "0")
        # Sending runs beside reading: a slow PutRecords (or a cloud that times out) must not hold up the reading of
        # frames, which capture overwrites in the ring about a second later.
        self.bus.ensure_group(CLOUD_REQUESTS_STREAM, group, "0")
        self._outbox = asyncio.Queue(maxsize=OUTBOX_BATCHES)
        sending = asyncio.create_task(self._send_loop(), name="sampler-send")
        try:
            while not stop.is_set():
                if sending.done():
                    sending.result()  # the sender failed: raise it here, the service exits and is restarted
                block_ms = 250 if not any(self.waiting.values()) else max(10, int(self.settings.sampler_edge_wait_s * 250))
                entries = await asyncio.to_thread(
                    self.bus.read_group, list(self.cameras), group, self.settings.sampler_consumer, 100, block_ms, "0")
                entries += self._claim_stale()
                await self.handle(entries)
                await self.confirm()
                self.progress.beat()
                self.report()
            await self.finish()
        finally:
            if not sending.done():
                await self._outbox.put(None)
                await sending
            self._outbox = None
        self.report(force=True)

    async def _send_loop(self) -> None:
        """Forward what the reader decided, in order, acknowledging each frame once its record is sent or spooled;
        replay the spool when the cloud answers again."""
        assert self._outbox is not None
        while True:
            try:
                batch = await asyncio.wait_for(self._outbox.get(), timeout=0.5)
            except TimeoutError:
                await self.replay_spool()
                await self._send_patches()
                await self.send_heartbeat()
                continue
            if batch is None:
                return
            await self._forward_and_ack(batch)
            await self.replay_spool()
            await self._send_patches()

    async def send_heartbeat(self) -> None:
        """The edge servers' health summaries for the fleet console, when due and the cloud answers (never spooled)."""
        if not self.heartbeats.due() or len(self.spool) or time.monotonic() < self.cloud_retry_at:
            return
        try:
            records = await asyncio.to_thread(self.heartbeats.records)
        except Exception as error:  # the health stream could not be read: the next one will try again
            log.warning("no heartbeat this time: %s", error)
            return
        if not records:
            return
        try:
            await self.sender.send(records)
            self.counters["heartbeats_sent"] += len(records)
        except CloudUnavailable as error:
            self.counters["heartbeats_unsent"] += len(records)
            self.cloud_unreachable(error.reason)

    async def _send_patches(self) -> None:
        if self.patches is not None:
            await self.patches.send(self.sender.claim_check.s3, time.time())

    async def _forward_and_ack(self, records: list[OutgoingRecord]) -> None:
        await self.forward(records)
        self.report()  # a cloud that just went away (or came back) is in health before the frames are acknowledged
        finished: dict[str, list[str]] = defaultdict(list)
        for record in records:
            stream, entry_id = record.token
            finished[stream].append(entry_id)
        for stream, entry_ids in finished.items():
            await asyncio.to_thread(self.bus.ack, stream, self.settings.sampler_group, entry_ids)

    async def confirm(self) -> None:
        """Frames a rule wants confirmed go at once, outside the policy and its budget (services/sampler/confirmations.py)."""
        group = self.settings.sampler_group
        records, read = confirmation_records(self.bus, group, self.settings.sampler_consumer, self.site.site)
        if records:
            self.counters["sent_rule_confirm"] += len(records)
            if self._outbox is not None:
                await self._outbox.put(records)  # acknowledged by the send loop once sent or spooled
            else:
                await self._forward_and_ack(records)
        carried = {record.token[1] for record in records}
        if others := [entry_id for entry_id in read if entry_id not in carried]:
            self.bus.ack(CLOUD_REQUESTS_STREAM, group, others)

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

    async def handle(self, entries: list[StreamEntry], now: float | None = None) -> None:
        """Queue new frames, decide those whose edge result came (or whose wait ran out), send, acknowledge."""
        now = time.monotonic() if now is None else now
        finished: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            self.counters["frames_seen"] += 1
            if entry.stream in self.waiting and isinstance(entry.message, FrameRef):
                self.waiting[entry.stream].append(WaitingFrame(entry, entry.message, now, time.time() - entry.message.capture_ts))
            else:
                self.counters["not_frames"] += 1
                finished[entry.stream].append(entry.entry_id)
        if self.policy.needs_edge:
            self.pairing.read(self.bus, now)
            self.pairing.expire(now)
            self._watch_edge(now)
            for camera_id, capture_ts, found, boxes in self.pairing.cloud_answers():
                self.policy.learn(camera_id, capture_ts, found, boxes)
        outgoing: list[OutgoingRecord] = []
        for frame in self._ready(now):
            self._apply(self._decide(frame), outgoing, finished)
        self._apply(self.policy.poll(time.time()), outgoing, finished)
        self._current.clear()
        self._tracks.clear()
        if outgoing and self._outbox is not None:
            await self._outbox.put(outgoing)  # the send loop forwards and acknowledges them
        elif outgoing:  # driven without run() (tests, replays): forward here
            await self._forward_and_ack(outgoing)
        if self._outbox is None:
            await self._send_patches()
        for stream, entry_ids in finished.items():
            self.bus.ack(stream, self.settings.sampler_group, entry_ids)

    def _ready(self, now: float) -> list[WaitingFrame]:
        """Frames to decide now, in capture order per camera: the edge result is here or the wait is over."""
        ready: list[WaitingFrame] = []
        wait = self.settings.sampler_edge_wait_s
        for stream, queue in self.waiting.items():
            camera_id = self.cameras[stream].id
            patient = self.policy.needs_edge and camera_id not in self.edge_silent
            while queue:
                frame = queue[0]
                if patient and not self.pairing.has(frame.ref.frame_id) and now - frame.arrived < wait:
                    break
                ready.append(queue.popleft())
        return ready

    def _decide(self, frame: WaitingFrame) -> list[Verdict]:
        ref = frame.ref
        token: Token = (frame.entry.stream, frame.entry.entry_id)
        edge = self.pairing.take(ref.frame_id) if self.policy.needs_edge else None
        self._current[token] = (ref, None)
        if edge is not None and edge.tracks:
            self._tracks[token] = [FrameTrack(track_id=t.track_id, label=t.label[:64],
                                              box=tuple(min(max(v, 0.0), 1.0) for v in t.box))  # type: ignore[arg-type]
                                   for t in edge.tracks[:MAX_FRAME_TRACKS]]
        borrowed: BorrowedFrame | None = None
        if self.policy.needs_pixels:
            if self._decimate(ref, frame.read_lag_s):
                return self._not_evaluated(token, ref, "decimated")
            if self.fetcher.lapped(ref):  # the sampler fell behind the ring: skip it cheaply, counted
                return self._not_evaluated(token, ref, "gone")
            try:
                borrowed = self.fetcher.borrow(ref)
            except (FrameGone, ValueError) as error:
                log.debug("frame %s cannot be read: %s", ref.frame_id, error)
                return self._not_evaluated(token, ref, "unreadable")
        self._current[token] = (ref, borrowed)
        if self.patches is not None and self.patches.due(ref.capture_ts):
            self._offer_patches(ref, borrowed)
        facts = FrameFacts(token, ref.camera_id, ref.seq, ref.capture_ts, edge)
        self.counters["frames_evaluated"] += 1
        self.coverage.add(evaluated=True)
        return self.policy.offer(facts, borrowed.pixels if borrowed else None)

    def _decimate(self, ref: FrameRef, read_lag_s: float) -> bool:
        """Skip on purpose while behind the rings (services/sampler/catch_up.py), rather than lose frames by chance."""
        slots = self.fetcher.ring_slots(ref.shm_name)
        span = ring_span_s(slots, self.fps.get(ref.camera_id, 0.0)) if slots else None
        wait = self.settings.sampler_edge_wait_s if self.policy.needs_edge else 0.0
        return self.catch_up.skip(ref.camera_id, ref.seq, read_lag_s, span or None, time.time(), wait)

    def _not_evaluated(self, token: Token, ref: FrameRef, reason: str) -> list[Verdict]:
        """A master frame the policy never saw (its pixels were gone or unreadable): counted, and said in health."""
        self.counters["frames_not_evaluated"] += 1
        self.coverage.add(evaluated=False)
        return [Verdict(token, "skip", reason, ref.camera_id, ref.capture_ts)]

    def _offer_patches(self, ref: FrameRef, borrowed: BorrowedFrame | None) -> None:
        try:
            pixels = borrowed.pixels if borrowed is not None else self.fetcher.fetch(ref)
            self.patches.offer(ref.camera_id, pixels, ref.capture_ts)  # type: ignore[union-attr]
        except (FrameGone, ValueError) as error:
            self.counters["patch_frames_gone"] += 1
            log.debug("frame %s gone before its patches were chosen: %s", ref.frame_id, error)

    def _apply(self, verdicts: list[Verdict], outgoing: list[OutgoingRecord], finished: dict[str, list[str]]) -> None:
        for verdict in verdicts:
            token = cast(Token, verdict.token)
            stream, entry_id = token
            if token not in self.held and token not in self._current:
                continue  # held earlier, but its pixels were gone by then: already counted and acknowledged
            if verdict.verb == "skip":
                self.held.pop(token, None)
                self.counters[f"skipped_{verdict.reason}"] += 1
                finished[stream].append(entry_id)
                continue
            record = self.held.pop(token) if token in self.held else self._record(token)
            if record is None:
                finished[stream].append(entry_id)
            elif verdict.verb == "hold":
                self.held[token] = record
            else:
                self.counters[f"sent_{verdict.reason}"] += 1
                self.counters["frames_sampled"] += 1
                outgoing.append(record)

    def _record(self, token: Token) -> OutgoingRecord | None:
        """The Kinesis record for a frame being decided; None (counted) when its pixels are gone."""
        ref, borrowed = self._current[token]
        try:
            pixels = borrowed.pixels if borrowed is not None else self.fetcher.fetch(ref)
            encoded = self.uplink.encode(pixels, ref.capture_ts) if self.uplink else self.encoder.encode(pixels)
            if borrowed is not None and not borrowed.still_valid():
                raise FrameGone("overwritten in the ring while it was encoded")
        except (FrameGone, ValueError) as error:
            self.counters["frames_gone"] += 1
            log.debug("sampled frame %s is gone: %s", ref.frame_id, error)
            return None
        if encoded is None:
            self.counters["skipped_uplink"] += 1  # the policy chose it, but no step of the ladder fits the budget now
            return None
        frame = CloudFrame(site=self.site.site, frame_id=ref.frame_id, camera_id=ref.camera_id, seq=ref.seq,
                           capture_ts=ref.capture_ts, width=encoded.width, height=encoded.height, jpeg=encoded.jpeg,
                           face_candidate=self.face_candidates is not None and self.face_candidates.marks(ref),
                           tracks=self._tracks.get(token, []),
                           shrink_factor=encoded.shrink_factor, jpeg_quality=encoded.quality)
        self.counters["face_candidates"] += frame.face_candidate
        return OutgoingRecord(partition_key(self.site.site, ref.camera_id), frame.encode(), token=token)

    def _watch_edge(self, now: float) -> None:
        silent = self.pairing.silent_cameras(now, self.settings.sampler_edge_silence_s, self._started_monotonic)
        if silent != self.edge_silent:
            if silent:
                log.warning("no edge results for %s for %.0f s: sampling them on change + heartbeat",
                            ", ".join(silent), self.settings.sampler_edge_silence_s)
            else:
                log.info("edge results arrive again for every master camera")
            self.edge_silent = silent
        tracking = self.policy.tracking_cameras() if isinstance(self.policy, AdaptivePolicy) else []
        if tracking != self.tracking:
            untracked = sorted(set(self.pairing.masters) - set(tracking))
            log.info("edge tracks objects on %s: new tracks go to the cloud once each%s", ", ".join(tracking) or "no camera",
                     f"; {', '.join(untracked)} sampled by counts (their boxes carry no track ids)" if untracked else "")
            self.tracking = tracking

    async def finish(self) -> None:
        """At stop: a frame held for the budget is skipped (counted, acknowledged); waiting ones stay pending."""
        release = getattr(self.policy, "release", None)
        if release is None:
            return
        finished: dict[str, list[str]] = defaultdict(list)
        self._apply(release(), [], finished)
        for stream, entry_ids in finished.items():
            self.bus.ack(stream, self.settings.sampler_group, entry_ids)

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
            "frames_saved": sum(v for k, v in self.counters.items()
                                if k.startswith("skipped_") and k not in ("skipped_unreadable", "skipped_gone", "skipped_decimated")),
            "frames_waiting": sum(len(q) for q in self.waiting.values()), "frames_held": len(self.held),
            "edge_silent_cameras": len(self.edge_silent), "edge_tracking_cameras": len(self.tracking),
            "coverage": round(self._coverage(), 5),
            "decimating_cameras": len(self.catch_up.decimating()),
            "coverage_recent": round(self.coverage.share(), 5),
            "uplink_budget_kbps": self.settings.sampler_uplink_kbps,
            "objects_sent": getattr(self.policy, "objects_sent", 0),
            "objects_adopted": getattr(self.policy, "objects_adopted", 0),
            **{k: v for k, v in self.pairing.counters.items()},
            **(self.uplink.counters if self.uplink else {}),
            **(self.patches.counters if self.patches else {}),
        }
        return {name: float(values.get(name, 0)) for name in sorted(set(values) | set(COUNTER_NAMES))}

    def _coverage(self) -> float:
        """Share of the master frames read so far that the policy evaluated."""
        evaluated, missed = self.counters["frames_evaluated"], self.counters["frames_not_evaluated"]
        return evaluated / (evaluated + missed) if evaluated + missed else 1.0

    def state(self) -> HealthState:
        healthy: HealthState = "degraded" if self.cloud_down_reason or len(self.spool) or self.edge_silent else "ok"
        return self.progress.state(healthy)[0]

    def message(self) -> str:
        parts = []
        stalled = self.progress.state()[1]
        if stalled:
            parts.append(stalled)
        if self.cloud_down_reason:
            parts.append(f"cloud unreachable: {self.cloud_down_reason}")
        if self.edge_silent:
            parts.append(f"no edge results for {', '.join(self.edge_silent)}: sampling on change + heartbeat")
        decimating = self.catch_up.describe()
        if decimating:
            parts.append(decimating)
        missed = self.coverage.missed_share()
        if missed > COVERAGE_WARN_SHARE:
            parts.append(f"{missed:.1%} of the last {self.coverage.total()} master frames not evaluated (decimated on purpose, "
                         "or overwritten in the ring before the sampler read them: raise HYBRIDCAM_CAPTURE_RING_S or lower the "
                         "cameras' rate)")
        return "; ".join(parts)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        state = self.state()
        if not force and state == self._reported_state and now - self._last_report < self.settings.sampler_health_interval_s:
            return  # a change of state is reported at once; counters every health interval
        self._last_report, self._reported_state = now, state
        health = self.health()
        self.bus.publish(HEALTH_STREAM, health)
        if self.settings.sampler_counters_file is not None:
            write_run_counters(self.settings.sampler_counters_file, self.run_counters(health.counters))

    def health(self) -> Health:
        return Health(service="sampler", instance=self.settings.sampler_consumer, state=self.state(),
                      message=self.message()[:200], counters=self.snapshot())

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
            "policy": self.policy.name,
            "send_fraction": round(counters["frames_sampled"] / decided, 6) if (decided := decided_frames(counters)) else None,
            **{name: (value if name.startswith("coverage") else int(value)) for name, value in counters.items()
               if name not in ("records_sent", "bytes_sent", "frames_sampled", "uptime_s", "master_cameras")},
        }

    def close(self) -> None:
        self.fetcher.close()


OUTBOX_BATCHES = 64  # decided batches waiting to be sent; past this the reader waits for the sender
COVERAGE_WARN_SHARE = 0.01  # health says so when more master frames than this were not evaluated
COVERAGE_WINDOW = 2000  # master frames the recent share is taken over (about 13 s of 6 cameras at 25 fps)


class CoverageWindow:
    """Evaluated / not evaluated over the last COVERAGE_WINDOW master frames (fixed memory: two counts per block)."""

    BLOCK = 100

    def __init__(self) -> None:
        self.blocks: deque[list[int]] = deque(maxlen=COVERAGE_WINDOW // self.BLOCK)

    def add(self, evaluated: bool) -> None:
        if not self.blocks or sum(self.blocks[-1]) >= self.BLOCK:
            self.blocks.append([0, 0])
        self.blocks[-1][0 if evaluated else 1] += 1

    def total(self) -> int:
        return sum(a + b for a, b in self.blocks)

    def missed_share(self) -> float:
        total = self.total()
        return sum(b for _, b in self.blocks) / total if total else 0.0

    def share(self) -> float:
        return 1.0 - self.missed_share()


def uplink_budget(settings: SamplerSettings) -> ByteBudget | None:
    """The sampler's share of the site's uplink, or None without a budget."""
    if not settings.sampler_uplink_kbps:
        return None
    log.info("uplink budget: %g kbit/s for sampled frames and patches", settings.sampler_uplink_kbps)
    return ByteBudget(kbit_per_s_to_bytes(settings.sampler_uplink_kbps))


def patch_sender(settings: SamplerSettings, site: str, budget: ByteBudget | None) -> PatchSender | None:
    if not settings.sampler_patches_per_s:
        return None
    quality = UplinkQuality(settings.sampler_patch_factor, settings.sampler_patch_jpeg_quality)
    chooser = PatchSampler(quality, settings.sampler_patch_px, patches_per_s=settings.sampler_patches_per_s)
    log.info("super-resolution patches: %g a second, %d px, measured at %s, to s3://%s/%s/",
             settings.sampler_patches_per_s, settings.sampler_patch_px, quality.describe(),
             settings.sampler_claim_check_bucket, settings.sampler_patch_prefix)
    return PatchSender(chooser, site, settings.sampler_claim_check_bucket, settings.sampler_patch_prefix,
                       settings.sampler_patch_flush_s, budget)


def decided_frames(counters: dict[str, float]) -> float:
    """Frames the policy decided about: sent plus deliberately skipped."""
    return counters.get("frames_sampled", 0) + sum(v for k, v in counters.items() if k.startswith("skipped_"))


def write_run_counters(path: Path, counters: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(counters, indent=1) + "\n")
    os.replace(temporary, path)


@asynccontextmanager
async def open_sampler(settings: SamplerSettings, site: SiteConfig,
                       policy: SamplingPolicy | None = None) -> AsyncIterator[Sampler]:
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
        budget = uplink_budget(settings)
        uplink = UplinkFitter(budget, encoder) if budget is not None else None
        patches = patch_sender(settings, site.site, budget)
        sampler = Sampler(settings, site, bus, sender, spool, policy or build_policy(settings, site), encoder,
                          uplink=uplink, patches=patches)
        try:
            yield sampler
        finally:
            sampler.close()
            bus.close()
