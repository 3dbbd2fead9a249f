"""The adaptive sampler against bad input, in process, with a real redis-server, real frames in shared
memory and moto's Kinesis: edge results for unknown frames, out of order or late, an edge detector
that stops mid-run, frames that cannot be decoded. The sampler keeps going, counts each, and every
frame it acknowledged was either sent (and is on the stream) or counted as skipped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import boto3
import pytest

from services.sampler.encoding import FrameEncoder
from services.sampler.kinesis_sender import ClaimCheck, KinesisSender
from services.sampler.service import Sampler, build_policy
from services.sampler.settings import SamplerSettings
from services.sampler.spool import Spool
from shared.schemas import CloudFrame, Detection, DetectionSet, FrameRef, Health
from shared.site_config import load_site
from shared.stream_bus import DETECTIONS_STREAM, StreamBus, frames_stream
from tests.fixtures.cloud_edge import FramePublisher, kinesis_frames, pending_count, write_cloud_site

GROUP = "sampler"


@pytest.fixture()
def stream_name(aws_env: dict[str, str]) -> str:
    name = f"frames-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


@asynccontextmanager
async def adaptive_sampler(redis_url: str, stream_name: str, tmp_path: Path, **overrides: object) -> AsyncIterator[Sampler]:
    from aiobotocore.session import get_session

    options: dict[str, object] = {"sampler_edge_wait_s": 0.3, "sampler_edge_silence_s": 2.0, **overrides}
    settings = SamplerSettings(redis_url=redis_url, site_file=write_cloud_site(tmp_path / "site.yaml"),
                               sampler_stream_name=stream_name, sampler_spool_dir=tmp_path / "spool", **options)  # type: ignore[arg-type]
    site = load_site(settings.site_file)
    bus = StreamBus(redis_url)
    async with get_session().create_client("kinesis") as kinesis:
        sender = KinesisSender(kinesis, stream_name, ClaimCheck(None, "", "", settings.sampler_record_limit_bytes))
        sampler = Sampler(settings, site, bus, sender, Spool(tmp_path / "spool", 1000, 10**8), build_policy(settings, site),
                          FrameEncoder(80, 640, settings.sampler_max_jpeg_bytes))
        for stream in sampler.cameras:
            bus.ensure_group(stream, GROUP, "0")
        sampler.pairing.last_id = "0"
        try:
            yield sampler
        finally:
            sampler.close()
            bus.close()


def edge_result(ref: FrameRef, people: int, score: float = 0.9, camera: str | None = None, frame_id: str | None = None) -> DetectionSet:
    return DetectionSet(camera_id=camera or ref.camera_id, seq=ref.seq, frame_id=frame_id or ref.frame_id,
                        capture_ts=ref.capture_ts, width=ref.width, height=ref.height, model="nanodet", provider="cpu",
                        latency_ms=5.0, detections=[Detection(label="person", score=score, box=(10, 10, 50, 90))] * people)


async def step(sampler: Sampler, now: float) -> None:
    entries = sampler.bus.read_group(list(sampler.cameras), GROUP, "test", 100, 10, "0")
    await sampler.handle(entries, now)


def skipped(sampler: Sampler) -> int:
    return sum(v for k, v in sampler.counters.items() if k.startswith("skipped_"))


def test_edge_results_out_of_order_for_unknown_frames_or_late_are_paired_or_counted(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path) as sampler:
            bus = sampler.bus
            master = FramePublisher(bus, "wide")
            try:
                refs = master.publish(range(0, 6))
                # Edge results in reverse order, one for a frame nobody published, one for the slave camera.
                for index, ref in reversed(list(enumerate(refs))):
                    bus.publish(DETECTIONS_STREAM, edge_result(ref, people=1 if index >= 3 else 0))
                bus.publish(DETECTIONS_STREAM, edge_result(refs[0], 2, frame_id="wide-1-999999"))
                bus.publish(DETECTIONS_STREAM, edge_result(refs[0], 2, camera="north", frame_id="north-1-1"))
                now = time.monotonic()
                await step(sampler, now)
                assert sampler.counters["frames_seen"] == 6
                assert sampler.pairing.counters["edge_results"] == 7  # the slave's result is not ours
                assert sampler.pairing.counters["edge_missing"] == 0  # every frame got its own result
                # frame 0 (first frame) and frame 3 (a person appeared) go; the rest are unchanged or rate-limited
                assert sampler.counters["sent_changed"] == 1
                assert sampler.counters["sent_appeared"] + sampler.counters["skipped_rate"] >= 1
                # A result for an already decided frame is late; the unknown one expires unmatched.
                bus.publish(DETECTIONS_STREAM, edge_result(refs[1], 0))
                await step(sampler, now + 0.05)
                assert sampler.pairing.counters["edge_late"] == 1
                sampler.pairing.expire(now + 60)
                assert sampler.pairing.counters["edge_unmatched"] == 1
                assert pending_count(bus, frames_stream("wide"), GROUP) == 0
                assert sampler.counters["frames_sampled"] + skipped(sampler) == 6
            finally:
                master.close()
        sent = [f for f in kinesis_frames(stream_name) if isinstance(f, CloudFrame)]
        assert len(sent) == sampler.counters["frames_sampled"] == sampler.sender.counters["records_sent"]

    asyncio.run(scenario())


def test_cloud_results_on_the_detections_stream_tell_the_policy_what_the_cloud_has_seen(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path) as sampler:
            bus = sampler.bus
            master = FramePublisher(bus, "wide")
            try:
                first = master.publish([0])[0]
                bus.publish(DETECTIONS_STREAM, edge_result(first, people=0))
                now = time.monotonic()
                await step(sampler, now)
                assert sampler.counters["frames_sampled"] == 1
                # The cloud found three people in that frame (with a label spelt as Rekognition spells it).
                answer = edge_result(first, people=0).model_copy(update={
                    "source": "cloud", "detections": [Detection(label="Person", score=0.97, box=(10, 10, 50, 90))] * 3})
                bus.publish(DETECTIONS_STREAM, answer)
                await step(sampler, now + 0.05)
                assert sampler.pairing.counters["cloud_answers"] == 1
                assert sampler.policy.cameras["wide"].cloud_count == 3  # type: ignore[attr-defined]
            finally:
                master.close()

    asyncio.run(scenario())


def test_a_sampler_whose_loop_stopped_turning_reports_degraded_then_failed(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path) as sampler:
            assert sampler.health().state == "ok"
            sampler.progress.last -= 100  # no loop turn for 100 s
            assert (sampler.health().state, sampler.health().message) == ("degraded", "no progress for 100.0 s")
            sampler.progress.last -= 100
            assert sampler.health().state == "failed"
            sampler.bus.on_retry()  # type: ignore[misc]  # Redis away, the bus retrying: not a stall
            assert sampler.health().state == "ok"

    asyncio.run(scenario())


def test_an_edge_that_stops_mid_run_makes_frames_wait_only_a_bounded_time_then_falls_back(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path) as sampler:
            bus = sampler.bus
            master = FramePublisher(bus, "wide")
            try:
                start = time.monotonic()
                for ref in master.publish(range(0, 3)):
                    bus.publish(DETECTIONS_STREAM, edge_result(ref, 0))
                await step(sampler, start)
                assert sampler.counters["frames_sampled"] + skipped(sampler) == 3
                master.publish(range(3, 6))  # edge_infer died: no results any more
                await step(sampler, start + 0.1)
                assert sum(len(q) for q in sampler.waiting.values()) == 3  # waiting for their edge results
                assert pending_count(bus, frames_stream("wide"), GROUP) == 3  # not acknowledged while undecided
                await step(sampler, start + 0.5)  # the bounded wait is over
                assert sampler.pairing.counters["edge_missing"] == 3
                assert pending_count(bus, frames_stream("wide"), GROUP) == 0
                master.publish(range(6, 9))
                await step(sampler, start + 3.0)  # silent for longer than edge_silence_s: fall back, no waiting
                assert sampler.edge_silent == ["wide"] and sampler.state() == "degraded"
                assert "change + heartbeat" in sampler.health().message
                assert pending_count(bus, frames_stream("wide"), GROUP) == 0
                assert isinstance(sampler.health(), Health) and sampler.health().counters["edge_silent_cameras"] == 1
                for ref in master.publish(range(9, 10)):  # edge_infer is back
                    bus.publish(DETECTIONS_STREAM, edge_result(ref, 0))
                await step(sampler, start + 3.1)
                assert sampler.edge_silent == [] and sampler.state() == "ok"
                assert sampler.counters["frames_sampled"] + skipped(sampler) == 10
            finally:
                master.close()

    asyncio.run(scenario())


def test_undecodable_frames_and_foreign_messages_are_counted_and_the_sampler_goes_on(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path, sampler_edge_silence_s=0.01) as sampler:
            bus = sampler.bus
            master = FramePublisher(bus, "wide")
            try:
                broken = FrameRef(camera_id="wide", seq=100, capture_ts=time.time(), width=640, height=480, jpeg=b"not a jpeg")
                vanished = FrameRef(camera_id="wide", seq=101, capture_ts=time.time(), width=640, height=480,
                                    shm_name="hybridcam-no-such-ring", slot=0)
                bus.publish(frames_stream("wide"), broken)
                bus.publish(frames_stream("wide"), vanished)
                bus.publish(frames_stream("wide"), edge_result(broken, 1))  # a message that is no frame
                bus.redis.xadd(frames_stream("wide"), {b"m": b"\x93garbage"})  # undecodable: dead-lettered by the bus
                good = master.publish(range(200, 202))
                await step(sampler, time.monotonic() + 5)
                assert sampler.counters["skipped_unreadable"] == 2
                assert sampler.counters["not_frames"] == 1
                assert bus.counters["dead_lettered"] == 1
                assert sampler.counters["sent_changed"] == 1  # the first good frame, then an unchanged one
                assert sampler.counters["skipped_unchanged"] == 1
                assert pending_count(bus, frames_stream("wide"), GROUP) == 0
                sent = [f for f in kinesis_frames(stream_name) if isinstance(f, CloudFrame)]
                assert [f.seq for f in sent] == [good[0].seq]
            finally:
                master.close()

    asyncio.run(scenario())


def test_a_sampler_that_fell_behind_the_ring_skips_the_lapped_frames_counted(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path, sampler_edge_silence_s=0.01) as sampler:
            master = FramePublisher(sampler.bus, "wide", slots=4)
            try:
                master.publish(range(0, 10))  # a 4-slot ring: frames 0-5 are overwritten before the sampler looks
                await step(sampler, time.monotonic() + 5)
                lost = sampler.counters["skipped_gone"] + sampler.counters["skipped_unreadable"]
                assert lost == 6 and sampler.counters["skipped_gone"] >= 5
                assert sampler.counters["frames_sampled"] + sampler.counters["skipped_unchanged"] \
                    + sampler.counters["skipped_rate"] == 4
                assert sampler.snapshot()["frames_saved"] == sampler.counters["skipped_unchanged"] + sampler.counters["skipped_rate"]
                assert pending_count(sampler.bus, frames_stream("wide"), GROUP) == 0
            finally:
                master.close()

    asyncio.run(scenario())


def test_the_sampler_process_reports_its_decisions_on_health_metrics_and_the_counters_file(redis_server, stream_name, tmp_path) -> None:
    import json
    import os
    import urllib.request

    from devstack.servers import free_port
    from tests.fixtures.pipeline import ServiceRunner, wait_until

    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "HYBRIDCAM_REDIS_URL": redis_server.url,
           "HYBRIDCAM_SITE_FILE": str(write_cloud_site(tmp_path / "site.yaml")), "HYBRIDCAM_SAMPLER_STREAM_NAME": stream_name,
           "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(tmp_path / "spool"), "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(tmp_path / "run.json"),
           "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.3", "HYBRIDCAM_SAMPLER_EDGE_SILENCE_S": "1", "PYTHONUNBUFFERED": "1"}
    runner = ServiceRunner(env, logs)
    bus = StreamBus(redis_server.url)
    master = FramePublisher(bus, "wide")
    try:
        runner.start("sampler", "--health-port", str(port))  # the default policy: adaptive
        assert wait_until(lambda: pending_count(bus, frames_stream("wide"), GROUP) == 0, 30), runner.logs()
        for seq in range(0, 20):
            master.publish(range(seq, seq + 1))
            time.sleep(0.05)

        def health() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                return json.loads(reply.read())

        assert wait_until(lambda: health()["counters"].get("frames_seen") == 20 and not health()["counters"]["frames_waiting"], 30), \
            runner.logs()
        report = health()
        counters = report["counters"]
        assert report["policy"].startswith("adaptive") and "change + heartbeat" in report["message"]  # no edge_infer here
        assert counters["sent_changed"] == 1 and counters["skipped_unchanged"] == 19 and counters["frames_saved"] == 19
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert "hybridcam_sampler_sent_changed" in metrics and "hybridcam_sampler_skipped_unchanged" in metrics
        assert pending_count(bus, frames_stream("wide"), GROUP) == 0
        assert wait_until(lambda: (tmp_path / "run.json").exists()
                          and json.loads((tmp_path / "run.json").read_text()).get("skipped_unchanged") == 19, 10)
        run = json.loads((tmp_path / "run.json").read_text())
        assert run["policy"] == "adaptive" and run["send_fraction"] == 0.05
    finally:
        runner.stop_all()
        master.close()
        bus.close()


def test_under_a_budget_the_held_frame_waits_unacknowledged_and_is_skipped_at_shutdown(redis_server, stream_name, tmp_path) -> None:
    async def scenario() -> None:
        async with adaptive_sampler(redis_server.url, stream_name, tmp_path, sampler_budget_images_per_hour=1.0,
                                    sampler_budget_burst=1.0, sampler_max_fps=1e5) as sampler:  # frames come microseconds apart: no rate rule
            bus = sampler.bus
            master = FramePublisher(bus, "wide")
            try:
                for ref in master.publish(range(0, 10)):
                    bus.publish(DETECTIONS_STREAM, edge_result(ref, people=0 if ref.seq < 3 else 1))
                await step(sampler, time.monotonic())
                assert sampler.counters["frames_sampled"] == 1  # frame 0 took the only token
                assert sampler.snapshot()["frames_held"] == 1  # the confirmed arrival waits for a token
                assert sampler.counters["skipped_budget"] == 5  # as informative as the held one, later: skipped
                assert pending_count(bus, frames_stream("wide"), GROUP) == 1  # the held frame is not acknowledged
                await sampler.finish()
                assert sampler.counters["skipped_budget"] == 6 and pending_count(bus, frames_stream("wide"), GROUP) == 0
            finally:
                master.close()

    asyncio.run(scenario())
