"""The sampler as a process: real redis-server, real frames in shared memory, moto's Kinesis (or no cloud at all)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3
import pytest

from cost_model.run_counters import load_run_counters
from devstack.servers import LocalMoto, free_port
from services.sampler.spool import Spool
from shared.schemas import CloudFrame, decode_as
from shared.stream_bus import StreamBus, frames_stream
from tests.fixtures.cloud_edge import FramePublisher, kinesis_frames, latest_health, pending_count, write_cloud_site
from tests.fixtures.pipeline import ServiceRunner, wait_until


@pytest.fixture()
def stream_name(aws_env: dict[str, str]) -> str:
    name = f"frames-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def sampler_env(redis_url: str, tmp_path: Path, stream_name: str, aws_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": aws_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "HYBRIDCAM_REDIS_URL": redis_url, "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml")),
        "HYBRIDCAM_SAMPLER_STREAM_NAME": stream_name, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(tmp_path / "spool"),
        "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(tmp_path / "sampler-run.json"),
        "HYBRIDCAM_SAMPLER_CLOUD_RETRY_S": "0.5", "HYBRIDCAM_SAMPLER_CONNECT_TIMEOUT_S": "1",
        "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.3", "HYBRIDCAM_SAMPLER_MAX_ATTEMPTS": "2", "PYTHONUNBUFFERED": "1",
        "HYBRIDCAM_SAMPLER_POLICY": "every_nth",
    }


def spooled_counter(bus: StreamBus) -> float:
    health = latest_health(bus, "sampler")
    return health.counters.get("spooled", 0) if health else 0


def spooled_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob("*.rec"))


def test_unreachable_cloud_spools_and_replays_in_order_across_a_restart(redis_server, stream_name, tmp_path) -> None:
    port = free_port()  # nothing listens here until the "cloud comes back"
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = ServiceRunner(sampler_env(redis_server.url, tmp_path, stream_name, f"http://127.0.0.1:{port}"), logs)
    bus = StreamBus(redis_server.url)
    master, slave = FramePublisher(bus, "wide"), FramePublisher(bus, "north")
    cloud = LocalMoto(port=port)
    try:
        first = runner.start("sampler", name="sampler-first")
        master.publish(range(0, 30))
        slave.publish(range(0, 30))
        assert wait_until(lambda: len(spooled_files(tmp_path)) == 3, 60), runner.logs()
        assert wait_until(lambda: pending_count(bus, frames_stream("wide"), "sampler") == 0, 10), "spooled frames not acknowledged"
        health = latest_health(bus, "sampler")
        assert health is not None and health.state == "degraded" and "unreachable" in health.message

        runner.stop_all()  # the spool outlives the sampler
        assert first.returncode == 0 and len(spooled_files(tmp_path)) == 3

        cloud.start()  # the same moto backends as the session's server: the stream is there
        runner.start("sampler", name="sampler-second")
        master.publish(range(30, 50))
        assert wait_until(lambda: len(kinesis_frames(stream_name)) == 5, 60), runner.logs()
        frames = kinesis_frames(stream_name)
        assert all(isinstance(f, CloudFrame) for f in frames)
        assert [f.seq for f in frames] == [0, 10, 20, 30, 40]  # spooled ones first, in order, then the new ones
        assert all(f.camera_id == "wide" and f.jpeg and f.jpeg[:2] == b"\xff\xd8" for f in frames)
        assert spooled_files(tmp_path) == []
    finally:
        runner.stop_all()
        master.close()
        slave.close()
        cloud.stop()

    counters = json.loads((tmp_path / "sampler-run.json").read_text())
    assert counters["frames_sampled"] == 2 and counters["records_sent"] == 5  # this run: 2 new frames, 3 replayed + 2
    assert counters["spooled"] == 2 and counters["dropped"] == 0  # 2 new ones queued behind the replay
    assert load_run_counters(tmp_path / "sampler-run.json").cameras == 1


def test_the_spool_bound_drops_the_oldest_records_while_the_cloud_is_away(redis_server, stream_name, tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = sampler_env(redis_server.url, tmp_path, stream_name, f"http://127.0.0.1:{free_port()}")
    env["HYBRIDCAM_SAMPLER_SPOOL_MAX_RECORDS"] = "2"
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    master = FramePublisher(bus, "wide")
    try:
        runner.start("sampler")
        master.publish(range(0, 50))
        assert wait_until(lambda: spooled_counter(bus) == 5, 60), runner.logs()
        health = latest_health(bus, "sampler")
        assert health.counters["dropped"] == 3 and health.counters["spool_depth"] == 2
    finally:
        runner.stop_all()
        master.close()
    assert len(spooled_files(tmp_path)) == 2
    assert spooled_seqs(tmp_path) == [30, 40]  # the newest survive


def spooled_seqs(tmp_path: Path) -> list[int]:
    spool = Spool(tmp_path / "spool", max_records=100, max_bytes=10**9)
    return [decode_as(record.data, CloudFrame).seq for record in spool.oldest(100, 10**9)]


def test_the_command_refuses_to_start_without_a_stream(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "HYBRIDCAM_SAMPLER_STREAM_NAME": ""}
    completed = subprocess.run([sys.executable, "-m", "hybridcam", "sampler"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "HYBRIDCAM_SAMPLER_STREAM_NAME" in completed.stderr and "Traceback" not in completed.stderr
