"""Cloud-path benchmark on the local stack (real redis-server, moto server, local model server).

Prints two tables:
1. sampler throughput: frames of the synthetic scene are published as fast as a copy into the
   shared-memory ring allows while `hybridcam sampler` (every frame sampled) fetches, encodes and puts them on
   Kinesis; records/s and MB/s run from the first frame published to the last record's arrival;
2. edge -> cloud -> edge latency: a master camera at 10 fps, every 10th frame sampled, the
   deployed stack in moto, the unchanged Lambda handler fed by the local event source poller, the
   detector behind the local Rekognition endpoint, and `hybridcam results-bridge` bringing the
   results back; latency = detection set published on the edge stream - frame capture time, and
   the share of it spent before the record reached Kinesis.

Figures describe this machine and moto, not AWS: moto answers in-process, there is no network
between the edge and the region, and the "cloud" detector runs on this CPU.

Usage: python bench/cloud.py [--frames 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.local.event_source_poller import EventSourcePoller, load_handler  # noqa: E402
from devstack.local_cloud import start_local_cloud  # noqa: E402
from devstack.servers import LocalRedis  # noqa: E402
from services.capture.synthetic_scene import SyntheticScene  # noqa: E402
from services.sampler.encoding import FrameEncoder  # noqa: E402
from shared.frame_ring import FrameRingWriter, ring_name  # noqa: E402
from shared.schemas import CloudFrame, DetectionSet, FrameRef, SchemaError, decode_as  # noqa: E402
from shared.stream_bus import DETECTIONS_STREAM, StreamBus, frames_stream  # noqa: E402

console = Console()
WIDTH, HEIGHT, FPS = 1280, 720, 10.0
LAMBDA_VARIABLES = ("FRAMES_BUCKET", "FRAMES_TABLE", "ALERT_TOPIC_ARN", "RESULTS_QUEUE_URL", "DETECTOR_BACKEND",
                    "SAGEMAKER_ENDPOINT", "WATCH_LABELS", "MIN_CONFIDENCE", "ALERT_COOLDOWN_S", "SITE")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def write_site(path: Path, every: int) -> Path:
    path.write_text(yaml.safe_dump({
        "site": "bench-cloud",
        "defaults": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "cloud_sample_every": every},
        "cameras": [{"id": "wide", "role": "master", "source": "synthetic"}],
    }))
    return path


class Camera:
    """The synthetic scene's master view written into a ring and announced on its stream, as capture does."""

    def __init__(self, bus: StreamBus, slots: int) -> None:
        self.bus = bus
        self.scene = SyntheticScene.default_site(num_cameras=1, width=WIDTH, height=HEIGHT)
        self.ring = FrameRingWriter(ring_name("wide", f"hcbench{uuid.uuid4().hex[:6]}"), WIDTH, HEIGHT, slots)

    def publish(self, seq: int, pixels: np.ndarray | None = None) -> None:
        slot, view = self.ring.begin()
        if pixels is None:
            self.scene.render("wide", seq / FPS, out=view)
        else:
            np.copyto(view, pixels)
        capture_ts = time.time()
        self.ring.commit(slot, seq, capture_ts)
        self.bus.publish(frames_stream("wide"), FrameRef(camera_id="wide", seq=seq, capture_ts=capture_ts, width=WIDTH,
                                                         height=HEIGHT, shm_name=self.ring.name, slot=slot), maxlen=10_000)

    def close(self) -> None:
        self.ring.close()


def service(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "hybridcam", command], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream_records(stream_name: str) -> list[dict]:
    kinesis = boto3.client("kinesis")
    records: list[dict] = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += reply["Records"]
            if not reply["Records"]:
                break
            iterator = reply.get("NextShardIterator")
    return records


def wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.2)


def bench_throughput(base_env: dict[str, str], redis_url: str, work: Path, frames: int) -> Table:
    bus = StreamBus(redis_url)
    bus.redis.flushall()
    stream = f"bench-throughput-{uuid.uuid4().hex[:6]}"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    camera = Camera(bus, slots=frames)
    views = [camera.scene.render("wide", i / FPS) for i in range(0, 200, 10)]  # rendered ahead: publishing costs a copy
    encoder = FrameEncoder()
    encode_ms = []
    for pixels in views:
        started = time.perf_counter()
        encoder.encode(pixels)
        encode_ms.append((time.perf_counter() - started) * 1000)
    env = {**base_env, "HYBRIDCAM_SITE_FILE": str(write_site(work / "site-every-frame.yaml", 1)),
           "HYBRIDCAM_SAMPLER_STREAM_NAME": stream, "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(work / "spool-throughput"),
           "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(work / "throughput-run.json")}
    sampler = service("sampler", env, work / "sampler-throughput.log")
    try:
        wait_for(lambda: sampler_is_reading(bus), 60, "the sampler to create its consumer group")
        time.sleep(1.0)  # it reads right after creating the group
        first_published = time.time()
        for seq in range(frames):  # as fast as capture could: a copy into the ring and an XADD each
            camera.publish(seq, views[seq % len(views)])
        wait_for(lambda: len(stream_records(stream)) >= frames, 300, f"{frames} records on {stream}")
    finally:
        stop(sampler)
        camera.close()
    records = stream_records(stream)
    window = max(r["ApproximateArrivalTimestamp"].timestamp() for r in records) - first_published
    sizes = [len(r["Data"]) for r in records]
    table = Table(title=f"1. sampler throughput ({len(records)} synthetic {WIDTH}x{HEIGHT} frames, every frame "
                        "sampled; first frame published -> last record on Kinesis)", title_justify="left")
    for column in ("records/s", "MB/s", "record (KB, median)", "JPEG encode (ms, median)", "records/s one shard takes"):
        table.add_column(column, justify="right")
    per_shard = min(1000.0, 1_048_576 / float(np.median(sizes)))  # a shard takes 1000 records/s and 1 MiB/s
    table.add_row(f"{len(records) / window:.1f}", f"{sum(sizes) / window / 1e6:.2f}", f"{np.median(sizes) / 1024:.0f}",
                  f"{np.median(encode_ms):.1f}", f"{per_shard:.1f}")
    bus.close()
    return table


def sampler_is_reading(bus: StreamBus) -> bool:
    try:
        groups = bus.redis.xinfo_groups(frames_stream("wide"))
    except Exception:  # the stream does not exist yet
        return False
    return any(g["name"] in (b"sampler", "sampler") for g in groups)


def bench_latency(base_env: dict[str, str], cloud_env: dict[str, str], stream: str, redis_url: str, work: Path,
                  seconds: float) -> Table:
    bus = StreamBus(redis_url)
    bus.redis.flushall()
    env = {**base_env, **cloud_env, "HYBRIDCAM_SITE_FILE": str(write_site(work / "site-every-10th.yaml", 10)),
           "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(work / "spool-latency"), "HYBRIDCAM_BRIDGE_WAIT_TIME_S": "20"}
    for name in LAMBDA_VARIABLES:  # the poller runs the handler in this process
        if name in cloud_env:
            os.environ[name] = cloud_env[name]
    poller = EventSourcePoller(stream, load_handler(), 10, work / "poller-checkpoints.json", 3)
    stop_poller = threading.Event()
    poller_thread = threading.Thread(target=poller.run_forever, args=(stop_poller, 0.05), daemon=True)
    poller_thread.start()
    services = [service("sampler", env, work / "sampler-latency.log"), service("results-bridge", env, work / "bridge.log")]
    camera = Camera(bus, slots=32)
    time.sleep(3.0)  # both services started and reading
    total = int(seconds * FPS)
    try:
        next_due = time.monotonic()
        for seq in range(total):
            camera.publish(seq)
            next_due += 1.0 / FPS
            time.sleep(max(0.0, next_due - time.monotonic()))
        expected = len(range(0, total, 10))
        wait_for(lambda: len(cloud_sets(bus)) >= expected, 120, f"{expected} cloud results on the edge stream")
    finally:
        for process in services:
            stop(process)
        stop_poller.set()
        poller_thread.join(timeout=30)
        camera.close()
    results = cloud_sets(bus)
    latency_ms = [(s.published_ts - s.capture_ts) * 1000 for s in results]
    arrivals = {}
    for record in stream_records(stream):
        try:
            frame = decode_as(record["Data"], CloudFrame)
        except SchemaError:
            continue
        arrivals[frame.frame_id] = (record["ApproximateArrivalTimestamp"].timestamp() - frame.capture_ts) * 1000
    to_kinesis = [arrivals[s.frame_id] for s in results if s.frame_id in arrivals]
    table = Table(title=f"2. edge -> cloud -> edge latency ({len(results)} sampled frames of {total}, "
                        f"detector {results[0].model if results else '?'})", title_justify="left")
    for column in ("", "p50 (ms)", "p95 (ms)", "max (ms)"):
        table.add_column(column, justify="right")
    table.add_row("capture -> detections back on the edge", f"{percentile(latency_ms, 50):.0f}",
                  f"{percentile(latency_ms, 95):.0f}", f"{max(latency_ms):.0f}")
    if to_kinesis:
        table.add_row("  of which capture -> record on Kinesis", f"{percentile(to_kinesis, 50):.0f}",
                      f"{percentile(to_kinesis, 95):.0f}", f"{max(to_kinesis):.0f}")
    table.caption = f"handler invocations {poller.invocations}, dead-lettered records {poller.dead_lettered}"
    bus.close()
    return table


def cloud_sets(bus: StreamBus) -> list[DetectionSet]:
    return [e.message for e in bus.read_all(DETECTIONS_STREAM)
            if isinstance(e.message, DetectionSet) and e.message.source == "cloud"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200,
                        help="frames for the throughput run; the ring holds them all (2.8 MB each; default 200)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the latency run (default 30)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hybridcam-bench-cloud-"))
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # moto tries to run the Lambda in Docker on every put
    console.print(f"starting redis-server, moto, the local model server and the stack (logs in {work})")
    redis = LocalRedis(data_dir=work / "redis")
    redis.data_dir.mkdir()
    redis.start()
    cloud = start_local_cloud(work / "cloud")
    try:
        cloud_env = cloud.environment()
        base_env = {**os.environ, **cloud.aws_environment(), "HYBRIDCAM_REDIS_URL": redis.url,
                    "HYBRIDCAM_SAMPLER_HEALTH_INTERVAL_S": "0.5", "PYTHONUNBUFFERED": "1"}
        console.print(bench_throughput(base_env, redis.url, work, args.frames))
        console.print(bench_latency(base_env, cloud_env, cloud.outputs["StreamName"], redis.url, work, args.seconds))
    finally:
        cloud.stop()
        redis.stop()
    console.print("[dim]moto and the model server run on this machine: these figures leave out the network to AWS "
                  "and a cloud GPU; they show what the edge side and the pipeline add.[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
