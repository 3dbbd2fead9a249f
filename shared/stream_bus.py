"""Redis Streams as the message bus between services.

- Every XADD trims with an approximate MAXLEN, so memory stays bounded.
- Consumers read through consumer groups and acknowledge what they handled.
- A consumer that died leaves pending entries; :meth:`StreamBus.claim_stale` takes them
  over with XAUTOCLAIM (Redis 6.2 replies with 2 elements, 7.x with 3).
- A message that cannot be decoded is counted, logged, copied to the dead-letter stream
  and acknowledged: it never crashes a consumer and never blocks the group.
- An entry that keeps failing (its consumer raised, or crashed, on it) is re-delivered by
  :meth:`StreamBus.claim_stale`; once XPENDING counts ``max_deliveries`` deliveries it is
  dead-lettered instead of being handed out again, so one poison entry cannot crash-loop a
  service or block its group.
- Connection loss (Redis restarting) and refusals that pass (out of memory under
  ``noeviction``, a replica in read-only mode, a failed background save, loading) are retried
  with capped exponential backoff; :attr:`StreamBus.refusing` says so meanwhile.
- Writes are idempotent under those retries: each publish carries a one-time token that a
  server-side script records with the entry it wrote, so a retry whose first attempt was applied
  but whose reply was lost (a time-out, a dropped connection) returns the same entry instead of
  writing it twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from shared.backoff import Backoff
from shared.metrics import StreamCollector
from shared.schemas import Envelope, SchemaError, decode
from shared.settings import redacted_url

log = logging.getLogger(__name__)

DETECTIONS_STREAM = "detections"
HEALTH_STREAM = "health"
ALERTS_STREAM = "alerts"
FACE_MATCHES_STREAM = "face_matches"  # watch-list hits from the cloud (FaceMatches), for the dashboard and compositor
CLOUD_REQUESTS_STREAM = "cloud_requests"  # frames the events service wants confirmed at once (CloudConfirmRequest)
DEADLETTER_STREAM = "deadletter"
PAYLOAD_FIELD = b"m"
# A write's one-time token lives this long: longer than any retry of it (the bus gives up or the
# service restarts well within a minute), short enough to cost little memory at frame rates.
WRITE_MARKER_PREFIX = "hybridcam:written:"
WRITE_MARKER_TTL_MS = 120_000
_WRITE_ONCE = """
local done = redis.call('GET', KEYS[2])
if done then return done end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
if KEYS[3] and #ARGV > 4 then redis.call('XACK', KEYS[3], ARGV[4], unpack(ARGV, 5)) end
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
return id
"""
DEADLETTER_BODY_LIMIT = 1024 * 1024  # longer bodies are kept truncated: the dead-letter stream must stay small
TRANSIENT_REFUSALS = ("OOM", "MISCONF", "BUSY", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "NOREPLICAS")

T = TypeVar("T")


def frames_stream(camera_id: str) -> str:
    return f"frames:{camera_id}"


def is_transient_refusal(error: redis.ResponseError) -> bool:
    """A refusal that passes by itself (memory freed, save fixed, failover done), unlike a bad command."""
    if isinstance(error, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return True
    text = str(error)
    if text.startswith("Command # "):  # redis-py prefixes errors of a pipeline's command
        text = text.split(": ", 1)[-1]
    return text.startswith(TRANSIENT_REFUSALS) or "used memory > 'maxmemory'" in text


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
        max_deliveries: int = 5,
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.max_deliveries = max_deliveries
        self.consumer_idle_limit_ms = 120_000  # a consumer silent this long with nothing pending is gone
        self.counters: Counter[str] = Counter()
        self.refusing = ""  # why Redis is refusing or unreachable right now ("" while it answers)
        # called on every retry: a loop waiting for Redis is alive (its health says degraded), not stalled
        self.on_retry: Callable[[], None] | None = None
        self.redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._write_script = self.redis.register_script(_WRITE_ONCE)

    # -- resilience ---------------------------------------------------------------------

    def call(self, operation: Callable[[], T], what: str) -> T:
        """Run a Redis operation, waiting out connection loss and passing refusals with capped backoff."""
        backoff, started, warned = Backoff(0.1, self.max_backoff_s), time.monotonic(), False
        while True:
            try:
                result = operation()
                if warned:
                    log.info("redis at %s is back; %s resumed", redacted_url(self.url), what)
                    self.refusing = ""
                return result
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as error:
                if isinstance(error, redis.ResponseError) and not is_transient_refusal(error):
                    raise
                refused = isinstance(error, redis.ResponseError)
                self.counters["redis_refusals" if refused else "redis_reconnects"] += 1
                if self.give_up_after_s is not None and time.monotonic() - started > self.give_up_after_s:
                    raise
                if not warned:
                    verb = "refused" if refused else "unreachable during"
                    log.warning("redis at %s %s %s (%s); retrying with backoff", redacted_url(self.url), verb, what, error)
                    warned = True
                self.refusing = f"redis {'refuses' if refused else 'unreachable'}: {str(error)[:120]}"
                if self.on_retry is not None:
                    self.on_retry()
                time.sleep(backoff.next_delay())

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    # -- producing ----------------------------------------------------------------------

    def publish(self, stream: str, message: Envelope, maxlen: int | None = None) -> str:
        """Append a message; a retry after a lost reply never appends it twice (see :meth:`_write_once`)."""
        return self._write_once(stream, message.encode(), maxlen or self.maxlen, None, "", ())

    def publish_and_ack(
        self, stream: str, message: Envelope, source_stream: str, group: str, entry_ids: Sequence[str]
    ) -> None:
        """Publish a result and acknowledge its inputs atomically (one server-side script).

        After a crash either both happened or neither did, so a restarted consumer neither loses
        output nor publishes it twice; and a retry after a reply was lost (a time-out: both this
        bus and the Redis client retry) finds the write done and does not repeat it.
        """
        self._write_once(stream, message.encode(), self.maxlen, source_stream, group, entry_ids)

    def _write_once(self, stream: str, payload: bytes, maxlen: int, source_stream: str | None, group: str,
                    entry_ids: Sequence[str], token: str | None = None) -> str:
        """XADD (and XACK) under a one-time token: the script records the token with the new entry's id,
        and a retry carrying the same token gets that id back instead of writing again."""
        marker = f"{WRITE_MARKER_PREFIX}{token or uuid.uuid4().hex}"
        keys = [stream, marker] + ([source_stream] if source_stream else [])
        args: list[Any] = [payload, maxlen, WRITE_MARKER_TTL_MS, group, *entry_ids]

        def write() -> Any:
            return self._write_script(keys=keys, args=args, client=self.redis)

        entry_id = self.call(write, f"publish to {stream}")
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

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
        entries = self._drop_poison(stream, group, parse_xautoclaim_entries(reply))
        self.counters["claimed"] += len(entries)
        decoded = self._decode_reply([(stream, entries)], group)
        self.remove_gone_consumers(stream, group, keep=consumer)
        return decoded

    def remove_gone_consumers(self, stream: str, group: str, keep: str) -> list[str]:
        """Delete consumers of a restarted or stopped instance: nothing pending (claim_stale took it
        over) and silent for ``consumer_idle_limit_ms``. Otherwise every restart leaves one behind."""

        def consumers() -> list:
            try:
                return self.redis.xinfo_consumers(stream, group)
            except redis.ResponseError as error:
                if "NOGROUP" in str(error) or "no such key" in str(error).lower():
                    return []
                raise

        removed = []
        for info in self.call(consumers, f"list consumers of {stream}"):
            name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
            if name != keep and int(info["pending"]) == 0 and int(info["idle"]) > self.consumer_idle_limit_ms:
                self.call(partial(self.redis.xgroup_delconsumer, stream, group, name), f"remove consumer {name}")
                removed.append(name)
        if removed:
            self.counters["consumers_removed"] += len(removed)
            log.info("removed %d gone consumer(s) from group %s of %s: %s", len(removed), group, stream, ", ".join(removed))
        return removed

    def delivery_counts(self, stream: str, group: str, entry_ids: Sequence[str]) -> dict[str, int]:
        """How often each pending entry was delivered (XPENDING's delivery counter)."""
        if not entry_ids:
            return {}
        ordered = sorted(entry_ids, key=lambda i: tuple(int(p) for p in i.split("-")))
        rows = self.call(lambda: self.redis.xpending_range(stream, group, min=ordered[0], max=ordered[-1],
                                                            count=len(ordered) + 100), f"inspect pending of {stream}")
        counts: dict[str, int] = {}
        for row in rows:
            message_id = row["message_id"]
            counts[message_id.decode() if isinstance(message_id, bytes) else str(message_id)] = int(row["times_delivered"])
        return counts

    def _drop_poison(self, stream: str, group: str, entries: list) -> list:
        """Dead-letter claimed entries delivered ``max_deliveries`` times or more; return the rest."""
        ids = [(raw_id.decode() if isinstance(raw_id, bytes) else raw_id) for raw_id, fields in entries if fields is not None]
        counts = self.delivery_counts(stream, group, ids)
        kept = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            delivered = counts.get(entry_id, 0)
            if fields is not None and delivered >= self.max_deliveries:
                self.counters["poison"] += 1
                self.dead_letter(stream, group, entry_id, fields.get(PAYLOAD_FIELD, b""),
                                 f"failed {delivered} deliveries (limit {self.max_deliveries})")
            else:
                kept.append((raw_id, fields))
        return kept

    def ack(self, stream: str, group: str, entry_ids: Sequence[str], tally: tuple[str, str] | None = None) -> None:
        """Acknowledge entries; with ``tally`` = (hash key, field), count them there in the same
        transaction, so a skip is counted exactly once even if the consumer dies right after."""
        if not entry_ids:
            return
        if tally is None:
            self.call(lambda: self.redis.xack(stream, group, *entry_ids), f"ack {stream}")
            return

        def ack_and_count() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(stream, group, *entry_ids)
            pipe.hincrby(tally[0], tally[1], len(entry_ids))
            pipe.execute()

        self.call(ack_and_count, f"ack {stream}")

    def dead_letter(self, stream: str, group: str, entry_id: str, raw: bytes, reason: str) -> None:
        self.counters["dead_lettered"] += 1
        log.warning("dropped entry %s of %s: %s (moved to %s)", entry_id, stream, reason[:200], DEADLETTER_STREAM)
        fields: dict[FieldT, EncodableT] = {b"stream": stream, b"entry": entry_id, b"group": group, b"reason": reason[:500],
                  b"size": len(raw), PAYLOAD_FIELD: raw[:DEADLETTER_BODY_LIMIT]}

        def move() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(
                DEADLETTER_STREAM,
                fields,
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

    def newest(self, stream: str, count: int) -> list[RawEntry]:
        """The stream's newest entries, newest first; a Redis error is raised at once (for callers that would
        rather go on without the answer than wait for Redis)."""
        items = self.redis.xrevrange(stream, count=count)
        return [RawEntry(stream, entry_id, payload_of(fields)) for entry_id, fields in stream_items(items)]

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
