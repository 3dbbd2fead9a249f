"""The Kinesis sender: per-call limits, per-record retry, claim check, an unreachable cloud.

Most tests drive KinesisSender with small fake clients (to script throttling and partial
failures, which the moto server never produces); the last ones use real aiobotocore clients
against the moto server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import numpy as np
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, EndpointConnectionError

from devstack.servers import free_port
from services.sampler.encoding import FrameEncoder
from services.sampler.kinesis_sender import ClaimCheck, CloudUnavailable, KinesisSender, OutgoingRecord, batches
from shared.schemas import CloudFrame, decode_as
from tests.fixtures.cloud import make_frame

MIB = 1024 * 1024
Outcome = Callable[[int, dict[str, Any]], str | None]  # (call number, record) -> ErrorCode or None


class FakeKinesis:
    """Records every PutRecords call; ``outcome`` decides each record's fate, ``raise_on`` whole calls."""

    def __init__(self, outcome: Outcome | None = None, raise_on: dict[int, Exception] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.outcome = outcome or (lambda call, record: None)
        self.raise_on = raise_on or {}

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto's names
        call = len(self.calls)
        self.calls.append(Records)
        if call in self.raise_on:
            raise self.raise_on[call]
        results = []
        for index, record in enumerate(Records):
            code = self.outcome(call, record)
            results.append({"ErrorCode": code, "ErrorMessage": "Rate exceeded"} if code else
                           {"SequenceNumber": f"{call:04d}{index:06d}", "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum(1 for r in results if "ErrorCode" in r), "Records": results}


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    async def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:  # noqa: N803
        self.objects[(Bucket, Key)] = Body
        return {}


class SleepLog:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def sender_for(kinesis: Any, s3: Any = None, bucket: str = "frames", record_limit: int = MIB, attempts: int = 4,
               sleep: SleepLog | None = None) -> KinesisSender:
    return KinesisSender(kinesis, "frames-stream", ClaimCheck(s3 or FakeS3(), bucket, "claim-check", record_limit),
                         500, 5 * MIB, attempts, 0.1, 2.0, sleep=sleep or SleepLog())


def records(count: int, size: int = 100, camera: str = "cam1") -> list[OutgoingRecord]:
    return [OutgoingRecord(camera, i.to_bytes(4, "big") + bytes(size - 4), token=("frames:cam1", f"{i}-0")) for i in range(count)]


def index_of(record: dict[str, Any]) -> int:
    return int.from_bytes(record["Data"][:4], "big")


def test_501_records_take_two_calls() -> None:
    kinesis = FakeKinesis()
    sender = sender_for(kinesis)
    given = records(501)
    done = asyncio.run(sender.send(given))
    assert [len(call) for call in kinesis.calls] == [500, 1]
    assert [index_of(r) for call in kinesis.calls for r in call] == list(range(501))
    assert all(r["PartitionKey"] == "cam1" for call in kinesis.calls for r in call)
    assert done == given
    assert sender.counters["records_sent"] == 501 and sender.counters["bytes_sent"] == 501 * (100 + 4)


def test_a_call_never_carries_more_than_5_mib() -> None:
    kinesis = FakeKinesis()
    big = records(12, size=500_000)  # 12 x 0.5 MB = 6 MB: over one call's 5 MiB
    asyncio.run(sender_for(kinesis).send(big))
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call) for call in kinesis.calls]
    assert len(kinesis.calls) == 2 and max(sizes) <= 5 * MIB
    assert [index_of(r) for call in kinesis.calls for r in call] == list(range(12))


def test_batches_respect_both_limits() -> None:
    chunks = list(batches(records(1200, size=10_000), 500, 3 * MIB))
    assert all(len(c) <= 500 and sum(r.size for r in c) <= 3 * MIB for c in chunks)
    assert sum(len(c) for c in chunks) == 1200


def test_only_the_failed_records_are_sent_again_after_a_jittered_backoff() -> None:
    def throttle_some(call: int, record: dict[str, Any]) -> str | None:
        return "ProvisionedThroughputExceededException" if call == 0 and index_of(record) in (1, 3) else None

    kinesis, sleep = FakeKinesis(throttle_some), SleepLog()
    sender = sender_for(kinesis, sleep=sleep)
    given = records(5)
    done = asyncio.run(sender.send(given))
    assert [index_of(r) for r in kinesis.calls[1]] == [1, 3]
    assert len(kinesis.calls) == 2 and len(sleep.delays) == 1 and 0.0 <= sleep.delays[0] <= 0.1
    assert {id(r) for r in done} == {id(r) for r in given}
    assert sender.counters["records_sent"] == 5 and sender.counters["retried_records"] == 2


def test_backoff_grows_and_is_capped() -> None:
    kinesis, sleep = FakeKinesis(lambda call, record: "InternalFailure" if call < 6 else None), SleepLog()
    sender = KinesisSender(kinesis, "s", ClaimCheck(FakeS3(), "b"), 500, 5 * MIB, 8, 0.1, 0.25, sleep=sleep)
    asyncio.run(sender.send(records(1)))
    assert len(sleep.delays) == 6 and all(0.0 <= d <= 0.25 for d in sleep.delays)


def test_a_throttled_call_is_retried() -> None:
    throttled = ClientError({"Error": {"Code": "LimitExceededException", "Message": "slow down"}}, "PutRecords")
    kinesis = FakeKinesis(raise_on={0: throttled})
    sender = sender_for(kinesis)
    asyncio.run(sender.send(records(3)))
    assert [len(call) for call in kinesis.calls] == [3, 3] and sender.counters["records_sent"] == 3


def test_records_still_refused_after_the_last_attempt_come_back_in_order() -> None:
    kinesis = FakeKinesis(lambda call, record: "ProvisionedThroughputExceededException" if index_of(record) % 2 else None)
    given = records(6)
    with pytest.raises(CloudUnavailable) as raised:
        asyncio.run(sender_for(kinesis, attempts=3).send(given))
    assert raised.value.unsent == [given[1], given[3], given[5]]  # the original objects, tokens included
    assert raised.value.accepted == [given[0], given[2], given[4]]
    assert len(kinesis.calls) == 3


def test_an_unreachable_cloud_gives_every_record_back() -> None:
    kinesis = FakeKinesis(raise_on={0: EndpointConnectionError(endpoint_url="http://127.0.0.1:9")})
    given = records(4)
    with pytest.raises(CloudUnavailable) as raised:
        asyncio.run(sender_for(kinesis).send(given))
    assert raised.value.unsent == given and raised.value.accepted == []
    assert "EndpointConnectionError" in raised.value.reason


def test_a_missing_stream_is_not_retried_forever() -> None:
    missing = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "Stream x not found"}}, "PutRecords")
    kinesis = FakeKinesis(raise_on={0: missing})
    with pytest.raises(CloudUnavailable) as raised:
        asyncio.run(sender_for(kinesis).send(records(2)))
    assert len(kinesis.calls) == 1 and "ResourceNotFoundException" in raised.value.reason


def noise_frame_record(camera: str = "cam1") -> tuple[OutgoingRecord, bytes]:
    """A real frame whose JPEG is over the 1 MiB record limit (noise compresses badly) but under 5 MB."""
    pixels = np.random.default_rng(3).integers(0, 256, (1080, 1440, 3), dtype=np.uint8)
    encoded = FrameEncoder(95, 1920, 5 * MIB).encode(pixels)
    assert MIB < len(encoded.jpeg) <= 5 * MIB
    frame = make_frame(camera_id=camera, seq=7, width=encoded.width, height=encoded.height, jpeg=encoded.jpeg)
    return OutgoingRecord(camera, frame.encode(), token="entry-7"), encoded.jpeg


def test_an_oversized_frame_goes_by_claim_check() -> None:
    kinesis, s3 = FakeKinesis(), FakeS3()
    record, jpeg = noise_frame_record()
    sender = sender_for(kinesis, s3, bucket="frames-bucket")
    done = asyncio.run(sender.send([record]))
    assert done == [record]
    [[sent]] = kinesis.calls
    frame = decode_as(sent["Data"], CloudFrame)
    assert frame.jpeg is None and frame.s3_bucket == "frames-bucket"
    assert frame.s3_key == f"claim-check/cam1/{frame.frame_id}.jpg"
    assert s3.objects[("frames-bucket", frame.s3_key)] == jpeg
    assert len(sent["Data"]) + len(sent["PartitionKey"]) <= MIB
    assert sender.counters["claim_checks"] == 1 and sender.counters["bytes_sent"] == len(sent["Data"]) + 4


def test_an_oversized_frame_without_a_bucket_is_dropped_and_counted() -> None:
    kinesis = FakeKinesis()
    record, _ = noise_frame_record()
    small = records(1)[0]
    sender = sender_for(kinesis, bucket="")
    done = asyncio.run(sender.send([record, small]))
    assert {id(r) for r in done} == {id(record), id(small)}  # both settled: neither may be spooled
    assert [index_of(r) for call in kinesis.calls for r in call] == [0]
    assert sender.counters["dropped_oversized"] == 1 and sender.counters["records_sent"] == 1


# -- real aiobotocore clients against the moto server ---------------------------------------------

async def send_with_aiobotocore(endpoint: str | None, stream: str, bucket: str, given: list[OutgoingRecord]) -> KinesisSender:
    config = AioConfig(connect_timeout=1, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1})
    session = get_session()
    async with session.create_client("kinesis", endpoint_url=endpoint, config=config) as kinesis, \
            session.create_client("s3", endpoint_url=endpoint, config=config) as s3:
        sender = KinesisSender(kinesis, stream, ClaimCheck(s3, bucket, "claim-check", MIB), 500, 5 * MIB, 3, 0.01, 0.05)
        await sender.send(given)
        return sender


def test_records_reach_a_real_stream_in_order_with_the_claim_check_in_s3(aws_env: dict[str, str]) -> None:
    stream, bucket = f"sampler-{uuid.uuid4().hex[:8]}", f"sampler-{uuid.uuid4().hex[:8]}"
    kinesis, s3 = boto3.client("kinesis"), boto3.client("s3")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    s3.create_bucket(Bucket=bucket)
    oversized, jpeg = noise_frame_record()
    given = [OutgoingRecord("cam1", make_frame(seq=i).encode()) for i in (1, 2)] + [oversized]
    sender = asyncio.run(send_with_aiobotocore(None, stream, bucket, given))
    assert sender.counters["records_sent"] == 3 and sender.counters["claim_checks"] == 1

    shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    frames = [decode_as(r["Data"], CloudFrame) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]
    assert [f.seq for f in frames] == [1, 2, 7]
    assert frames[0].jpeg == make_frame(seq=1).jpeg  # small frames travel inline
    assert frames[2].jpeg is None and s3.get_object(Bucket=frames[2].s3_bucket, Key=frames[2].s3_key)["Body"].read() == jpeg


def test_a_closed_port_is_reported_as_unavailable_with_every_record(aws_env: dict[str, str]) -> None:
    given = records(3)
    with pytest.raises(CloudUnavailable) as raised:
        asyncio.run(send_with_aiobotocore(f"http://127.0.0.1:{free_port()}", "any-stream", "any-bucket", given))
    assert raised.value.unsent == given and raised.value.accepted == []


class ThrottlingS3(FakeS3):
    """Answers SlowDown to the puts ``throttled`` names (by call number), like S3 under a request-rate spike."""

    def __init__(self, throttled: Callable[[int], bool]) -> None:
        super().__init__()
        self.throttled = throttled
        self.calls = 0

    async def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:  # noqa: N803
        call = self.calls
        self.calls += 1
        if self.throttled(call):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
        return await super().put_object(Bucket, Key, Body, ContentType)


def _oversized(count: int) -> list[OutgoingRecord]:
    return [OutgoingRecord("cam1", make_frame(seq=i, jpeg=bytes(2000)).encode(), token=i) for i in range(count)]


def test_a_throttled_claim_check_put_is_retried() -> None:
    s3 = ThrottlingS3(lambda call: call % 2 == 0)  # every other put answers SlowDown
    kinesis = FakeKinesis()
    sent = asyncio.run(sender_for(kinesis, s3, record_limit=1000).send(_oversized(4)))
    assert [r.token for r in sent] == [0, 1, 2, 3]
    assert len(s3.objects) == 4 and sum(len(call) for call in kinesis.calls) == 4


def test_claim_check_throttled_beyond_the_attempts_is_unavailable_not_a_crash() -> None:
    s3 = ThrottlingS3(lambda call: True)
    with pytest.raises(CloudUnavailable) as caught:
        asyncio.run(sender_for(FakeKinesis(), s3, record_limit=1000, attempts=3).send(_oversized(3)))
    assert [r.token for r in caught.value.unsent] == [0, 1, 2]  # all go to the spool, in order
    assert caught.value.accepted == [] and "SlowDown" in caught.value.reason
