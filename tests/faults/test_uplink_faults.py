"""Fault scenarios of the edge's cloud path (sampler, results bridge) against the moto server,
reached through an endpoint that the test can cut, throttle or hold (tests/faults/edge_stack.py)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from services.sampler.spool import Spool
from shared.schemas import CloudFrame, CloudResult, Detection, DetectionSet, decode_as, encode_text, frame_id_of
from shared.stream_bus import DETECTIONS_STREAM, StreamBus
from tests.faults.edge_stack import AwsEndpoint, exits, kill9
from tests.faults.report import FaultResult, full_run, record_fault
from tests.fixtures.cloud_edge import FramePublisher, kinesis_frames, write_cloud_site
from tests.fixtures.pipeline import ServiceRunner, wait_until


@pytest.fixture()
def endpoint(moto_server) -> Iterator[AwsEndpoint]:
    proxy = AwsEndpoint(moto_server.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture()
def edge_runner(redis_server, aws_env: dict[str, str], endpoint: AwsEndpoint, tmp_path: Path) -> Iterator[ServiceRunner]:
    env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL": endpoint.url, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "PYTHONUNBUFFERED": "1", "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.3", "HYBRIDCAM_BRIDGE_HEALTH_INTERVAL_S": "0.3"}
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(env, logs)
    try:
        yield runner
    finally:
        runner.stop_all()


def counters_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def spooled_frame_ids(spool_dir: Path) -> list[str]:
    spool = Spool(spool_dir, 10**6, 10**12)
    return [decode_as(r.data, CloudFrame).frame_id for r in spool.oldest(10**6, 10**12)]


# -- 6 ---------------------------------------------------------------------------------------------------


def test_6_s3_slowdown_on_half_the_claim_check_puts(redis_server, edge_runner: ServiceRunner, endpoint: AwsEndpoint,
                                                     tmp_path: Path) -> None:
    stream, bucket = f"frames-{uuid.uuid4().hex[:8]}", f"claims-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    boto3.client("s3").create_bucket(Bucket=bucket)
    counters_file, spool_dir = tmp_path / "sampler.json", tmp_path / "spool"
    edge_runner.env.update({
        "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml", every=1)),
        "HYBRIDCAM_SAMPLER_STREAM_NAME": stream, "HYBRIDCAM_SAMPLER_CLAIM_CHECK_BUCKET": bucket,
        "HYBRIDCAM_SAMPLER_RECORD_LIMIT_BYTES": "1024",  # every frame goes by claim check
        "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(spool_dir), "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(counters_file),
        "HYBRIDCAM_SAMPLER_BACKOFF_BASE_S": "0.05", "HYBRIDCAM_SAMPLER_CLOUD_RETRY_S": "1",
    })
    bus = StreamBus(redis_server.url)
    sampler = edge_runner.start("sampler")
    endpoint.slow_down_puts = True
    publisher = FramePublisher(bus, "wide")
    try:
        started = time.monotonic()
        for first in range(0, 40, 4):
            publisher.publish(range(first, first + 4))
            time.sleep(0.25)

        def settled() -> bool:
            sampled = counters_of(counters_file).get("frames_sampled", -1)
            on_stream = [f for f in kinesis_frames(stream) if isinstance(f, CloudFrame)]
            return sampled > 0 and len({f.frame_id for f in on_stream}) + len(spooled_frame_ids(spool_dir)) >= sampled

        assert wait_until(settled, 90), edge_runner.logs()
        recovery_s = time.monotonic() - started
        time.sleep(1.0)
    finally:
        publisher.close()
    on_stream = [f for f in kinesis_frames(stream) if isinstance(f, CloudFrame)]
    ids = Counter(f.frame_id for f in on_stream)
    spooled = spooled_frame_ids(spool_dir)
    sampled = counters_of(counters_file)["frames_sampled"]
    seen = len(set(ids) | set(spooled))
    duplicated = sum(n - 1 for n in ids.values()) + len(set(ids) & set(spooled))
    claims = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    record_fault(FaultResult(
        "6 S3 SlowDown", "503 SlowDown on every other claim-check PUT", recovery_s, sampled, seen, max(0, sampled - seen),
        duplicated, restarts=int(sampler.poll() is not None),
        notes=f"{endpoint.counters['slowed_down']} SlowDown answers; {len(ids)} on Kinesis, {len(spooled)} spooled; "
              f"{len(claims)} claim-check objects"))
    assert sampler.poll() is None, edge_runner.logs()
    assert endpoint.counters["slowed_down"] > 0
    assert seen == sampled == 40 and duplicated == 0
    assert all(f.s3_key and f.jpeg is None for f in on_stream)


# -- 9 ---------------------------------------------------------------------------------------------------


def _result(seq: int) -> CloudResult:
    capture_ts = time.time() - 5 + seq * 0.1
    return CloudResult(site="faults", frame_id=frame_id_of("wide", seq, capture_ts), camera_id="wide", seq=seq,
                       capture_ts=capture_ts, processed_ts=capture_ts + 0.5, width=640, height=424, backend="rekognition",
                       model="local", detections=[Detection(label="Person", score=0.9, box=(10.0, 10.0, 100.0, 200.0))])


def cloud_frame_ids(bus: StreamBus) -> list[str]:
    return [e.message.frame_id for e in bus.read_all(DETECTIONS_STREAM)
            if isinstance(e.message, DetectionSet) and e.message.source == "cloud"]


def queue_depth(queue_url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def test_9_kill_results_bridge_between_its_write_and_the_delete(redis_server, edge_runner: ServiceRunner,
                                                                endpoint: AwsEndpoint, tmp_path: Path) -> None:
    queue_url = boto3.client("sqs").create_queue(QueueName=f"results-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    results = [_result(seq) for seq in range(12)]
    for result in results:
        boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=encode_text(result))
    edge_runner.env.update({
        "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml")), "HYBRIDCAM_BRIDGE_QUEUE_URL": queue_url,
        "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "1", "HYBRIDCAM_BRIDGE_VISIBILITY_TIMEOUT_S": "3",
    })
    bus = StreamBus(redis_server.url)
    endpoint.hold_sqs_deletes_s = 30.0  # the first bridge writes its results, then hangs in the delete
    first = edge_runner.start("results-bridge", name="bridge-1")
    assert wait_until(lambda: endpoint.counters["deletes_held"] >= 1 and cloud_frame_ids(bus), 60), edge_runner.logs()
    written_before_kill = len(cloud_frame_ids(bus))
    kill9(first)
    endpoint.hold_sqs_deletes_s = 0.0
    restarted = time.monotonic()
    second = edge_runner.start("results-bridge", name="bridge-2")
    delivered = wait_until(lambda: len(set(cloud_frame_ids(bus))) == len(results) and queue_depth(queue_url) == 0, 90)
    recovery_s = time.monotonic() - restarted
    assert delivered, edge_runner.logs()
    ids = Counter(cloud_frame_ids(bus))
    duplicated = sum(n - 1 for n in ids.values())
    record_fault(FaultResult(
        "9 kill -9 results_bridge", "kill -9 between the Redis write and the SQS delete", recovery_s, len(results), len(ids),
        len(results) - len(ids), duplicated,
        notes=f"{written_before_kill} results written before the kill came back from SQS and were dropped as duplicates"))
    assert duplicated == 0 and len(ids) == len(results)
    assert second.poll() is None, edge_runner.logs()
