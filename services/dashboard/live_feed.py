"""Follows the detection, health and alert streams and fans the changes out to the open pages.

One blocking XREAD (5 s) over the three streams serves every browser: pages never make
Redis work. The dashboard only watches: it reads without a consumer group, acknowledges
nothing and never takes an entry away from a service. A slow page loses its oldest
events (counted), never slows the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from redis.typing import KeyT, StreamIdT

from services.dashboard.site_state import Event, SiteState
from shared.backoff import Backoff
from shared.metrics import LatencyHistograms
from shared.schemas import Alert, DetectionSet, SchemaError, decode
from shared.stream_bus import (
    ALERTS_STREAM,
    DETECTIONS_STREAM,
    FACE_MATCHES_STREAM,
    HEALTH_STREAM,
    Fields,
    payload_of,
    stream_items,
    stream_reply,
)

log = logging.getLogger(__name__)

WATCHED_STREAMS = (DETECTIONS_STREAM, HEALTH_STREAM, ALERTS_STREAM, FACE_MATCHES_STREAM)
HISTORY = {HEALTH_STREAM: 200, DETECTIONS_STREAM: 200, ALERTS_STREAM: 50, FACE_MATCHES_STREAM: 50}  # entries read back at start


class LiveFeed:
    def __init__(self, redis_url: str, state: SiteState, metrics: CollectorRegistry | None = None,
                 block_ms: int = 5000, queue_size: int = 512) -> None:
        self.client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=block_ms / 1000 + 5)
        self.state = state
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.last_ids: dict[str, str] = {}
        self.subscribers: set[asyncio.Queue[Event]] = set()
        self.counters: Counter[str] = Counter()
        self.latency = LatencyHistograms(metrics)
        self.alerts_seen = PromCounter("hybridcam_alerts", "alerts received on the edge, by camera and label",
                                       ["camera", "label"], registry=metrics)

    # -- following the streams -----------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            try:
                if not self.last_ids:
                    await self._read_history()
                await self._follow()
            except asyncio.CancelledError:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                if self.state.redis_ok:
                    log.warning("redis unreachable (%s); the page shows the last known state until it is back", error)
                    self._publish([{"type": "redis", "data": {"ok": False}}])
                self.state.redis_ok = False
                self.counters["redis_reconnects"] += 1
                await asyncio.sleep(backoff.next_delay())

    async def _read_history(self) -> None:
        for stream, count in HISTORY.items():
            entries = stream_items(await self.client.xrevrange(stream, count=count))
            for _entry_id, fields in reversed(entries):
                self._handle(fields, replay=True)
            self.last_ids[stream] = entries[0][0] if entries else "0-0"
        self._mark_redis_ok()

    async def _follow(self) -> None:
        while True:
            request: dict[KeyT, StreamIdT] = {stream: entry_id for stream, entry_id in self.last_ids.items()}
            reply = await self.client.xread(request, count=500, block=self.block_ms)
            self._mark_redis_ok()
            events: list[Event] = []
            for stream, entries in stream_reply(reply):
                for entry_id, fields in entries:
                    events.extend(self._handle(fields))
                    self.last_ids[stream] = entry_id
            self._publish(events)

    def _mark_redis_ok(self) -> None:
        if not self.state.redis_ok:
            self.state.redis_ok = True
            self._publish([{"type": "redis", "data": {"ok": True}}])

    def _handle(self, fields: Fields | None, replay: bool = False) -> list[Event]:
        try:
            message = decode(payload_of(fields))
        except SchemaError as error:
            self.counters["undecodable"] += 1
            log.debug("skipped an undecodable entry: %s", error)
            return []
        if not replay:
            self._observe(message)
        return self.state.apply(message)

    def _observe(self, message: object) -> None:
        if isinstance(message, DetectionSet):
            self.latency.observe(message)
        elif isinstance(message, Alert):
            self.alerts_seen.labels(message.camera_id, message.label).inc()

    async def watch_silent_cameras(self, every_s: float = 1.0) -> None:
        """Once a second: cameras whose capture went silent are shown down (no message says so: that is the point)."""
        while True:
            await asyncio.sleep(every_s)
            events = self.state.mark_silent_cameras(time.time())
            for event in events:
                log.warning("camera %s: %s", event["data"]["camera_id"], event["data"]["capture"]["message"])
            self._publish(events)

    # -- fan-out to pages ------------------------------------------------------------------

    def _publish(self, events: list[Event]) -> None:
        for queue in self.subscribers:
            for event in events:
                if queue.full():
                    queue.get_nowait()
                    self.counters["events_dropped"] += 1
                queue.put_nowait(event)

    @contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[Event]]:
        """A queue of events for one page: first the whole state, then every change."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=self.queue_size)
        queue.put_nowait({"type": "snapshot", "data": self.state.snapshot()})
        self.subscribers.add(queue)
        try:
            yield queue
        finally:
            self.subscribers.discard(queue)

    def stats(self) -> dict[str, Any]:
        return {"pages": len(self.subscribers), **self.counters}

    async def close(self) -> None:
        await self.client.aclose()
