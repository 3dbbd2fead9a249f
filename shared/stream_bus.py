"""Redis Streams as the message bus between services.

- Every XADD trims with an approximate MAXLEN, so memory stays bounded.
- Consumers read through consumer groups and acknowledge what they handled.
- A consumer that died leaves pending entries; :meth:`StreamBus.claim_stale` takes them
  over with XAUTOCLAIM (Redis 6.2 replies with 2 elements, 7.x with 3).
- A message that cannot be decoded is counted, logged, copied to the dead-letter stream
  and acknowledged: it never crashes a consumer and never blocks the group.
- Connection loss (Redis restarting) is retried with capped exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from shared.backoff import Backoff
from shared.metrics import StreamCollector
from shared.schemas import Envelope, SchemaError, decode

log = logging.getLogger(__name__)

DETECTIONS_STREAM = "detections"
HEALTH_STREAM = "health"
ALERTS_STREAM = "alerts"
FACE_MATCHES_STREAM = "face_matches"  # watch-list hits from the cloud (FaceMatches), for the dashboard and compositor
DEADLETTER_STREAM = "deadletter"
PAYLOAD_FIELD = b"m"

T = TypeVar("T")


def frames_stream(camera_id: str) -> str:
    return f"frames:{camera_id}"


@dataclass(frozen=True)
class StreamEntry:
    stream: str
    entry_id: str
    message: Envelope


@dataclass(frozen=True)
class RawEntry:
    """An entry as stored, not yet decoded (followers decode and count failures themselves)."""

    stream: str
    entry_id: str
    payload: bytes


class StreamBus:
    """A small, typed wrapper over redis-py for the project's streams."""

    def __init__(
        self,
        url: str,
        maxlen: int = 2000,
        max_backoff_s: float = 5.0,
        give_up_after_s: float | None = None,
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.counters: Counter[str] = Counter()
        self.redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )

    # -- resilience ---------------------------------------------------------------------

    def call(self, operation: Callable[[], T], what: str) -> T:
        """Run a Redis operation, waiting out connection loss with capped backoff."""
        backoff, started, warned = Backoff(0.1, self.max_backoff_s), time.monotonic(), False
        while True:
            try:
                result = operation()
                if warned:
                    log.info("redis at %s is back; %s resumed", self.url, what)
                return result
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self.counters["redis_reconnects"] += 1
                if self.give_up_after_s is not None and time.monotonic() - started > self.give_up_after_s:
                    raise
                if not warned:
                    log.warning("redis at %s unreachable during %s (%s); retrying", self.url, what, error)
                    warned = True
                time.sleep(backoff.next_delay())

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    # -- producing ----------------------------------------------------------------------

    def publish(self, stream: str, message: Envelope, maxlen: int | None = None) -> str:
        payload = message.encode()
        entry_id = self.call(
            lambda: self.redis.xadd(
                stream, {PAYLOAD_FIELD: payload}, maxlen=maxlen or self.maxlen, approximate=True
            ),
            f"publish to {stream}",
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def publish_and_ack(
        self, stream: str, message: Envelope, source_stream: str, group: str, entry_ids: Sequence[str]
    ) -> None:
        """Publish a result and acknowledge its inputs atomically (MULTI/EXEC).

        After a crash either both happened or neither did, so a restarted consumer neither
        loses nor duplicates output.
        """
        payload = message.encode()

        def transaction() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(stream, {PAYLOAD_FIELD: payload}, maxlen=self.maxlen, approximate=True)
            if entry_ids:
                pipe.xack(source_stream, group, *entry_ids)
            pipe.execute()

        self.call(transaction, f"publish to {stream}")

    # -- consuming ----------------------------------------------------------------------

    def ensure_group(self, stream: str, group: str, start_id: str = "$") -> None:
        def create() -> None:
            try:
                self.redis.xgroup_create(stream, group, id=start_id, mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

        self.call(create, f"create group {group} on {stream}")

    def read_group(
        self,
        streams: Iterable[str],
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 500,
        start_id: str = "$",
    ) -> list[StreamEntry]:
        """Read new entries for this consumer; undecodable ones go to the dead-letter stream."""
        stream_list = list(streams)
        request: dict[KeyT, StreamIdT] = {s: ">" for s in stream_list}

        def read() -> object:
            try:
                return self.redis.xreadgroup(group, consumer, request, count=count, block=block_ms) or []
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # Redis restarted without persistence: the groups are gone, make them again.
                for stream in stream_list:
                    self.ensure_group(stream, group, start_id)
                return []

        reply = self.call(read, f"read {', '.join(stream_list)}")
        return self._decode_reply(reply, group)

    def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int = 5000, count: int = 100
    ) -> list[StreamEntry]:
        """Take over entries another consumer read but never acknowledged (it died)."""

        def claim() -> object:
            try:
                return self.redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
            except redis.ResponseError as error:
                if "NOGROUP" in str(error):
                    return []
                raise

        reply = self.call(claim, f"claim stale entries of {stream}")
        entries = parse_xautoclaim_entries(reply)
        self.counters["claimed"] += len(entries)
        return self._decode_reply([(stream, entries)], group)

    def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            self.call(lambda: self.redis.xack(stream, group, *entry_ids), f"ack {stream}")

    def dead_letter(self, stream: str, group: str, entry_id: str, raw: bytes, reason: str) -> None:
        self.counters["dead_lettered"] += 1
        log.warning("dropped entry %s of %s: %s (moved to %s)", entry_id, stream, reason, DEADLETTER_STREAM)

        def move() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(
                DEADLETTER_STREAM,
                {b"stream": stream, b"entry": entry_id, b"group": group, b"reason": reason, PAYLOAD_FIELD: raw},
                maxlen=self.maxlen,
                approximate=True,
            )
            pipe.xack(stream, group, entry_id)
            pipe.execute()

        self.call(move, "dead-letter")

    def _decode_reply(self, reply: object, group: str) -> list[StreamEntry]:
        entries: list[StreamEntry] = []
        for stream, items in stream_reply(reply):
            for entry_id, fields in items:
                if fields is None:  # trimmed away while pending
                    self.ack(stream, group, [entry_id])
                    continue
                raw = payload_of(fields)
                try:
                    entries.append(StreamEntry(stream, entry_id, decode(raw)))
                except SchemaError as error:
                    self.dead_letter(stream, group, entry_id, raw, str(error))
        return entries

    # -- plain reads (dashboards, tests) -------------------------------------------------

    def read_all(self, stream: str, count: int | None = None) -> list[StreamEntry]:
        items = self.call(lambda: self.redis.xrange(stream, count=count), f"read {stream}")
        out = []
        for entry_id, fields in stream_items(items):
            try:
                out.append(StreamEntry(stream, entry_id, decode(payload_of(fields))))
            except SchemaError:
                self.counters["undecodable"] += 1
        return out

    def follow(self, last_ids: Mapping[str, str], count: int, block_ms: int | None = None) -> list[RawEntry]:
        """Entries after the given ids (no consumer group: every follower sees every entry; "$" = only new ones)."""
        request: dict[KeyT, StreamIdT] = {stream: entry_id for stream, entry_id in last_ids.items()}
        reply = self.call(lambda: self.redis.xread(request, count=count, block=block_ms), "follow streams")
        return [RawEntry(stream, entry_id, payload_of(fields))
                for stream, items in stream_reply(reply) for entry_id, fields in items]

    # -- keyed state beside the streams ---------------------------------------------------

    def publish_once(self, once_key: str, ttl_s: int, messages: Sequence[tuple[str, Envelope]],
                     counters_key: str, increments: Mapping[str, int]) -> bool:
        """Publish messages and add to a counter hash in one MULTI, unless once_key exists (WATCH guards the race).

        once_key is then set with a TTL, so the same work delivered twice is published once.
        """
        payloads = [(stream, message.encode()) for stream, message in messages]

        def transaction() -> bool:
            with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(once_key)
                        if pipe.exists(once_key):
                            return False
                        pipe.multi()
                        for stream, payload in payloads:
                            pipe.xadd(stream, {PAYLOAD_FIELD: payload}, maxlen=self.maxlen, approximate=True)
                        pipe.set(once_key, b"1", ex=ttl_s)
                        for name, amount in increments.items():
                            if amount:
                                pipe.hincrby(counters_key, name, amount)
                        pipe.execute()
                        return True
                    except redis.WatchError:
                        continue  # another writer did this meanwhile: look again

        return self.call(transaction, f"publish once ({once_key})")

    def read_counter(self, counters_key: str, name: str) -> int:
        value = self.call(lambda: self.redis.hget(counters_key, name), f"read {counters_key}")
        return int(value or 0)

    def dead_letter_external(self, source: str, entry_id: str, group: str, raw: bytes, reason: str) -> None:
        """Copy a malformed message that came from outside Redis (a queue, a file) to the dead-letter stream."""
        self.counters["dead_lettered"] += 1
        fields: dict[FieldT, EncodableT] = {b"stream": source, b"entry": entry_id, b"group": group, b"reason": reason,
                                            PAYLOAD_FIELD: raw}
        self.call(lambda: self.redis.xadd(DEADLETTER_STREAM, fields, maxlen=self.maxlen, approximate=True),
                  "dead-letter")

    def stream_collector(self, streams: Callable[[], Iterable[str]]) -> StreamCollector:
        """Prometheus collector of these streams' lengths and pending counts."""
        return StreamCollector(self.redis, streams)

    def close(self) -> None:
        self.redis.close()


Fields = dict[bytes, bytes]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def payload_of(fields: Fields | None) -> bytes:
    payload = (fields or {}).get(PAYLOAD_FIELD, b"")
    return payload if isinstance(payload, bytes) else b""


def stream_items(items: object) -> list[tuple[str, Fields | None]]:
    """(entry id, fields) of one stream's entries in a reply; fields are None for an entry trimmed while pending."""
    if not isinstance(items, (list, tuple)):
        return []
    return [(_text(entry_id), fields if isinstance(fields, dict) else None) for entry_id, fields in items]


def stream_reply(reply: object) -> list[tuple[str, list[tuple[str, Fields | None]]]]:
    """(stream, entries) pairs of an XREAD or XREADGROUP reply (a list, or a mapping under RESP3)."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    elif isinstance(reply, (list, tuple)):
        pairs = list(reply)
    else:
        return []
    return [(_text(stream), stream_items(items)) for stream, items in pairs]


def parse_xautoclaim_entries(reply: object) -> list:
    """Entries of an XAUTOCLAIM reply.

    Redis 6.2 answers ``[next_id, entries]``; Redis 7 adds a third element, the ids of
    entries that were deleted while pending. redis-py passes both through.
    """
    if not isinstance(reply, (list, tuple)) or len(reply) not in (2, 3):
        raise ValueError(f"unexpected XAUTOCLAIM reply: {reply!r:.80}")
    entries = reply[1] or []
    if isinstance(entries, dict):
        entries = list(entries.items())
    return [(entry_id, fields) for entry_id, fields in entries]
