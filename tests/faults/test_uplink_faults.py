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
        "HYBRIDCAM_SAMPLER_POLICY": "every_nth",  # every frame goes to the cloud: the scenario counts them all
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


# -- 5 ---------------------------------------------------------------------------------------------------


class _Publisher:
    """Publishes the master camera's frames at a steady rate on a thread, while allowed to."""

    def __init__(self, bus: StreamBus, fps: float = 5.0) -> None:
        import threading

        self.frames = FramePublisher(bus, "wide")
        self.fps = fps
        self.seq = 0
        self.running = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.running.wait(0.1):
                self.frames.publish(range(self.seq, self.seq + 1))
                self.seq += 1
                time.sleep(1.0 / self.fps)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.frames.close()


def _health_states(bus: StreamBus, service: str) -> list[str]:
    from shared.schemas import Health

    return [e.message.state for e in bus.read_all("health") if isinstance(e.message, Health) and e.message.service == service]


@pytest.mark.faults_slow
def test_5_aws_unreachable_then_back(redis_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from cloud.local.event_source_poller import EventSourcePoller, load_handler
    from devstack.local_cloud import start_local_cloud

    outage_s = 600.0 if full_run() else float(os.environ.get("HYBRIDCAM_FAULTS_OUTAGE_S", 60))
    cloud = start_local_cloud(tmp_path / "run", f"hc-faults-{uuid.uuid4().hex[:6]}", detector="nanodet", alert_cooldown_s=0)
    endpoint = AwsEndpoint(cloud.moto.url).start()
    cloud_env = cloud.environment()
    for name, value in cloud_env.items():  # the in-process poller runs the handler with the Lambda's configuration
        if not name.startswith("HYBRIDCAM_"):
            monkeypatch.setenv(name, value)
    counters_file = Path(cloud_env["HYBRIDCAM_SAMPLER_COUNTERS_FILE"])
    env = {**os.environ, **cloud_env, "AWS_ENDPOINT_URL": endpoint.url, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml", every=5)), "PYTHONUNBUFFERED": "1",
           "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.3", "HYBRIDCAM_BRIDGE_HEALTH_INTERVAL_S": "0.5",
           "HYBRIDCAM_SAMPLER_CLOUD_RETRY_S": "2", "HYBRIDCAM_SAMPLER_CONNECT_TIMEOUT_S": "1",
           "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "1", "HYBRIDCAM_SAMPLER_POLICY": "every_nth"}  # a known share of frames
    (tmp_path / "logs").mkdir()
    runner = ServiceRunner(env, tmp_path / "logs")
    bus = StreamBus(redis_server.url)
    stream, table = cloud.outputs["StreamName"], cloud.outputs["FramesTableName"]
    poller_stop = threading.Event()
    poller = EventSourcePoller(stream, load_handler(), 10, tmp_path / "checkpoints.json", max_retries=2, retry_delay_s=0.0)
    poller_thread = threading.Thread(target=poller.run_forever, args=(poller_stop, 0.3), daemon=True)
    publisher = _Publisher(bus)
    processes = {"sampler": runner.start("sampler"), "results_bridge": runner.start("results-bridge")}
    try:
        poller_thread.start()
        publisher.running.set()
        assert wait_until(lambda: counters_of(counters_file).get("records_sent", 0) >= 3, 60), runner.logs()
        publisher.running.clear()
        time.sleep(1.5)
        before = counters_of(counters_file)

        endpoint.cut()
        publisher.running.set()
        time.sleep(outage_s)
        publisher.running.clear()
        time.sleep(1.5)
        during = counters_of(counters_file)
        sampled_in_outage = during["frames_sampled"] - before["frames_sampled"]
        drops_in_outage = during["dropped"] - before["dropped"]
        spool_expected = before["spool_depth"] + sampled_in_outage - drops_in_outage
        bridge_degraded = "degraded" in _health_states(bus, "results_bridge")

        endpoint.restore()
        restored = time.monotonic()
        publisher.running.set()
        time.sleep(3)
        publisher.running.clear()
        drained = wait_until(lambda: counters_of(counters_file).get("spool_depth", 1) == 0
                             and counters_of(counters_file).get("frames_sampled") == counters_of(counters_file).get("records_sent"), 120)
        recovery_s = time.monotonic() - restored
        assert drained, runner.logs()
        final = counters_of(counters_file)

        def frame_items() -> set[str]:
            items = boto3.client("dynamodb").scan(TableName=table)["Items"]
            return {i["pk"]["S"].removeprefix("frame#") for i in items if i["pk"]["S"].startswith("frame#")}

        def kinesis_ids() -> list[str]:
            return [f.frame_id for f in kinesis_frames(stream) if isinstance(f, CloudFrame)]

        assert wait_until(lambda: len(frame_items()) >= len(set(kinesis_ids())), 240), runner.logs()
        assert wait_until(lambda: len(set(cloud_frame_ids(bus))) >= len(frame_items()), 120), runner.logs()
        ended = exits(processes)
        on_stream, items, at_edge = kinesis_ids(), frame_items(), Counter(cloud_frame_ids(bus))
        final = counters_of(counters_file)  # now that every frame went through
    finally:
        publisher.close()
        poller_stop.set()
        poller_thread.join(10)
        runner.stop_all()
        endpoint.stop()
        cloud.stop()
    duplicated = sum(n - 1 for n in at_edge.values())
    record_fault(FaultResult(
        "5 AWS unreachable", f"AWS endpoint on a closed port for {outage_s:.0f} s, then back", recovery_s,
        int(final["frames_sampled"]), len(items), max(0, int(final["frames_sampled"]) - len(items)), duplicated,
        restarts=len(ended),
        notes=f"spool depth at the end of the outage {during['spool_depth']:.0f} = {sampled_in_outage:.0f} sampled - "
              f"{drops_in_outage:.0f} dropped; drained {recovery_s:.1f} s after the endpoint came back; "
              f"{len(on_stream)} Kinesis records for {len(set(on_stream))} frames; results bridge "
              f"{'reported degraded' if bridge_degraded else 'never reported degraded'} and never exited"))
    assert not ended, f"services exited: {ended}"
    assert during["spool_depth"] == spool_expected and sampled_in_outage > 0
    assert items == set(on_stream) and len(items) == int(final["frames_sampled"])
    assert set(at_edge) == items and duplicated == 0
    assert bridge_degraded
