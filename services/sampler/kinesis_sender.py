"""PutRecords with aiobotocore: batches within Kinesis's limits, retries, claim checks.

- A PutRecords call carries at most 500 records and 5 MiB (data + partition keys).
- Records Kinesis did not take (``FailedRecordCount`` > 0, a per-record ``ErrorCode`` such as
  ProvisionedThroughputExceededException) are sent again, only those, with exponential backoff
  and full jitter; so is a whole call that was throttled. Partition key = camera id, so each
  camera's frames stay in order on one shard.
- A record over the record limit goes by claim check: its JPEG is put in S3 first and the record
  carries only the bucket and key (:class:`ClaimCheck`). A throttled put (SlowDown, 503) is
  retried with the same backoff; still refused after the last attempt, the cloud counts as
  unreachable and the record (and the rest of the call) goes to the spool.
- When records are still not accepted after the last attempt, or the cloud cannot be reached
  (no connection, timeouts, the stream missing, access denied), :meth:`KinesisSender.send`
  raises :class:`CloudUnavailable` listing what was accepted and what was not, in order; the
  sampler spools the latter.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.backoff import Backoff
from shared.schemas import CloudFrame, decode_as

log = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException",
    "InternalFailure", "InternalFailureException", "ServiceUnavailable", "ServiceUnavailableException",
    "KMSThrottlingException", "RequestTimeout", "SlowDown",
})

Sleep = Callable[[float], Awaitable[None]]


def partition_key(site: str, camera_id: str) -> str:
    """Site and camera: one camera's frames stay in order on one shard, and many sites whose cameras
    share ids (every site has a "wide") spread over the shards instead of all hashing to one."""
    return f"{site}/{camera_id}"


@dataclass(eq=False)
class OutgoingRecord:
    """One Kinesis record: partition key and msgpack CloudFrame. ``token`` is the caller's
    bookkeeping (the frame entry to acknowledge, or the record's place in the spool)."""

    partition_key: str
    data: bytes
    token: Any = field(default=None, compare=False)

    @property
    def size(self) -> int:
        """What Kinesis counts against its record and call limits."""
        return len(self.data) + len(self.partition_key.encode())


class CloudUnavailable(Exception):
    """Some records were not accepted; ``unsent`` lists them (in order) for the spool."""

    def __init__(self, reason: str, accepted: list[OutgoingRecord], unsent: list[OutgoingRecord]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.accepted = accepted
        self.unsent = unsent


class _Unreachable(Exception):
    """Internal: the cloud did not answer, or refused in a way no quick retry fixes."""


def batches(records: Sequence[OutgoingRecord], max_records: int, max_bytes: int) -> Iterator[list[OutgoingRecord]]:
    """Consecutive runs of records within the per-call limits, in order."""
    batch: list[OutgoingRecord] = []
    size = 0
    for record in records:
        if batch and (len(batch) >= max_records or size + record.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record.size
    if batch:
        yield batch


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


async def _aws(request: Callable[[], Awaitable[Any]]) -> Any:
    """Run one AWS call; retryable errors pass through as ClientError, the rest become _Unreachable."""
    try:
        return await request()
    except ClientError as error:
        if error_code(error) in RETRYABLE_CODES:
            raise
        message = error.response.get("Error", {}).get("Message", "")
        raise _Unreachable(f"AWS refused: {error_code(error)}: {message}") from None
    except (TimeoutError, BotoCoreError, OSError) as error:
        raise _Unreachable(f"{type(error).__name__}: {error}") from None


class ClaimCheck:
    """Puts the JPEG of an oversized record in S3 and returns the small record that points at it."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "claim-check", record_limit: int = 1024 * 1024) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.record_limit = record_limit

    def key_of(self, frame: CloudFrame) -> str:
        return f"{self.prefix}/{frame.camera_id}/{frame.frame_id}.jpg"

    async def apply(self, record: OutgoingRecord) -> OutgoingRecord | None:
        """The record itself when it fits; its claim-check form otherwise; None when it cannot go."""
        if record.size <= self.record_limit:
            return record
        frame = decode_as(record.data, CloudFrame)
        if not self.bucket or frame.jpeg is None:
            log.warning("frame %s is %d bytes, over the %d byte record limit, and no claim-check bucket is set; dropped",
                        frame.frame_id, record.size, self.record_limit)
            return None
        key = self.key_of(frame)
        await _aws(lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=frame.jpeg, ContentType="image/jpeg"))
        small = frame.model_copy(update={"jpeg": None, "s3_bucket": self.bucket, "s3_key": key})
        return OutgoingRecord(record.partition_key, small.encode(), record.token)


class KinesisSender:
    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        claim_check: ClaimCheck,
        batch_records: int = 500,
        batch_bytes: int = 5 * 1024 * 1024,
        max_attempts: int = 5,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.claim_check = claim_check
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.sleep = sleep
        self.counters: Counter[str] = Counter()

    async def send(self, records: Sequence[OutgoingRecord]) -> list[OutgoingRecord]:
        """Put every record and return the ones the caller may forget (accepted, or dropped as
        oversized without a claim-check bucket); raise CloudUnavailable when some were not accepted."""
        originals = list(records)
        accepted: list[OutgoingRecord] = []
        unsent: list[OutgoingRecord] = []
        try:
            outgoing: list[tuple[OutgoingRecord, OutgoingRecord]] = []  # (as given, as sent)
            for record in originals:
                ready = await self._claim_checked(record)
                if ready is None:
                    self.counters["dropped_oversized"] += 1
                    accepted.append(record)  # settled: it must not be spooled or retried
                elif ready is not record:
                    self.counters["claim_checks"] += 1
                    outgoing.append((record, ready))
                else:
                    outgoing.append((record, ready))
            pairs = {id(sent): given for given, sent in outgoing}
            for batch in batches([sent for _, sent in outgoing], self.batch_records, self.batch_bytes):
                failed = set(await self._put_with_retries(batch))
                for position, sent in enumerate(batch):
                    if position in failed:
                        unsent.append(pairs[id(sent)])
                    else:
                        accepted.append(pairs[id(sent)])
                        self.counters["records_sent"] += 1
                        self.counters["bytes_sent"] += sent.size
        except _Unreachable as error:
            done = {id(record) for record in accepted} | {id(record) for record in unsent}
            unsent.extend(record for record in originals if id(record) not in done)
            raise CloudUnavailable(str(error), accepted, unsent) from None
        if unsent:
            raise CloudUnavailable(f"{len(unsent)} records still refused after {self.max_attempts} attempts", accepted, unsent)
        return accepted

    async def _claim_checked(self, record: OutgoingRecord) -> OutgoingRecord | None:
        """The claim check with retries for throttling; _Unreachable once the attempts are spent."""
        backoff = Backoff(self.backoff_base_s, max(self.backoff_base_s, self.backoff_cap_s), jitter=True)
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                await self.sleep(backoff.next_delay())
            try:
                return await self.claim_check.apply(record)
            except ClientError as error:  # only retryable codes get here
                self.counters["claim_check_throttled"] += 1
                log.warning("S3 answered %s to a claim-check put (attempt %d of %d)", error_code(error), attempt, self.max_attempts)
                last = error_code(error)
        raise _Unreachable(f"S3 still answering {last} to claim-check puts after {self.max_attempts} attempts")

    async def _put_with_retries(self, batch: list[OutgoingRecord]) -> list[int]:
        """Put a batch; return the positions of records still not accepted after the last attempt."""
        pending = list(range(len(batch)))
        backoff = Backoff(self.backoff_base_s, max(self.backoff_base_s, self.backoff_cap_s), jitter=True)
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.counters["retried_records"] += len(pending)
                await self.sleep(backoff.next_delay())
            self.counters["put_calls"] += 1
            records = [{"Data": batch[i].data, "PartitionKey": batch[i].partition_key} for i in pending]
            try:
                response = await _aws(partial(self.kinesis.put_records, StreamName=self.stream_name, Records=records))
            except ClientError as error:  # only retryable codes get here
                self.counters["throttled_calls"] += 1
                log.warning("PutRecords answered %s (attempt %d of %d)", error_code(error), attempt, self.max_attempts)
                continue
            results = response.get("Records", [])
            pending = [i for i, result in zip(pending, results) if result.get("ErrorCode")] + pending[len(results):]
            if not pending:
                return []
            codes = sorted({str(result["ErrorCode"]) for result in results if result.get("ErrorCode")})
            self.counters["failed_records"] += len(pending)
            log.info("%d of %d records not accepted (%s); retrying them", len(pending), len(results), ", ".join(codes))
        return pending
