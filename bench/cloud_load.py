"""Cloud side under fleet load: N simulated sites -> Kinesis (moto) -> the unchanged Lambda handler.

Each simulated site sends its master cameras' sampled frames (real JPEGs of a real clip, as the
sampler encodes them, CloudFrame records with the sampler's partition key `site/camera`) at the
measured sampling fraction of its cameras' frame rate, into a stream of S shards in the moto server,
for --seconds. One local event-source poller per shard (as Lambda runs one batch per shard at a
time) feeds the handler, which calls the local Rekognition stand-in, writes the frame to S3 and its
item to DynamoDB and sends the result to SQS, all in moto.

Prints: records/s and MB/s per shard; Lambda batches (size, latency p50/p95, records/s per shard of
handler time); DynamoDB items and S3 objects per site; and from those, how many such sites one
shard and one stack carry, with the limit that binds. The "Lambda" here runs on this CPU against a
local detector and moto, so its time per record is this machine's, not AWS's: the docs take the
measured handler overhead and an assumed Rekognition latency apart (docs/cloud.md).

Usage: python bench/cloud_load.py [--sites 20] [--shards 2] [--seconds 30] [--masters 2] [--fps 15]
                                  [--send-fraction 0.0448] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.local.event_source_poller import EventSourcePoller, load_handler  # noqa: E402
from devstack.local_cloud import start_local_cloud  # noqa: E402
from services.sampler.encoding import FrameEncoder  # noqa: E402
from services.sampler.kinesis_sender import partition_key  # noqa: E402
from shared.schemas import CloudFrame, frame_id_of  # noqa: E402

CLIP = REPO / "tests" / "data" / "video" / "car-detection.mp4"
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
LAMBDA_ACCOUNT_CONCURRENCY = 1000  # the default account limit; raised on request
MAX_PARALLELIZATION = 10
LAMBDA_VARIABLES = ("FRAMES_BUCKET", "FRAMES_TABLE", "ALERT_TOPIC_ARN", "RESULTS_QUEUE_URL", "FAILED_RECORDS_QUEUE_URL",
                    "DETECTOR_BACKEND", "SAGEMAKER_ENDPOINT", "WATCH_LABELS", "MIN_CONFIDENCE", "ALERT_COOLDOWN_S", "SITE")


@dataclass
class BatchLog:
    sizes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, handler: Any) -> Any:
        def run(event: dict, context: Any) -> Any:
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                with self.lock:
                    self.sizes.append(len(event["Records"]))
                    self.seconds.append(time.perf_counter() - started)
        return run


def real_jpegs(width: int, height: int, count: int = 12) -> list[bytes]:
    capture = cv2.VideoCapture(str(CLIP))
    encoder = FrameEncoder()
    jpegs: list[bytes] = []
    index = 0
    while len(jpegs) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            jpegs.append(encoder.encode(cv2.resize(frame, (width, height))).jpeg)
        index += 1
    capture.release()
    if not jpegs:
        raise SystemExit(f"cloud load: cannot read frames of {CLIP}")
    return jpegs


def site_sender(site: str, masters: int, rate_per_camera: float, seconds: float, jpegs: list[bytes], stream: str,
                sent: Counter, stop: threading.Event, width: int, height: int) -> None:
    """One site: its masters' sampled frames, in PutRecords calls as the sampler makes them."""
    kinesis = boto3.client("kinesis")
    interval = 1.0 / (rate_per_camera * masters)
    next_due = time.monotonic() + np.random.default_rng(abs(hash(site)) % 2**32).uniform(0, interval)
    end = time.monotonic() + seconds
    seq = 0
    while not stop.is_set() and time.monotonic() < end:
        time.sleep(max(0.0, next_due - time.monotonic()))
        camera = f"master{seq % masters + 1}"
        now = time.time()
        frame = CloudFrame(site=site, frame_id=frame_id_of(camera, seq, now), camera_id=camera, seq=seq, capture_ts=now,
                           width=width, height=height, jpeg=jpegs[seq % len(jpegs)])
        kinesis.put_records(StreamName=stream, Records=[{"Data": frame.encode(), "PartitionKey": partition_key(site, camera)}])
        sent[site] += 1
        seq += 1
        next_due += interval


def shard_records(stream: str) -> dict[str, list[dict]]:
    kinesis = boto3.client("kinesis")
    out: dict[str, list[dict]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[dict] = []
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += reply["Records"]
            if not reply["Records"]:
                break
            iterator = reply.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return out


class SinglePoller(EventSourcePoller):
    """The local poller restricted to one shard: one batch at a time per shard, as Lambda does."""

    def __init__(self, shard_id: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shard_id = shard_id

    def run_once(self) -> int:
        return self._drain_shard(self.shard_id)


def quiet_lambda_logs() -> None:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def run_load(sites: int, shards: int, seconds: float, masters: int, fps: float, fraction: float, width: int, height: int,
             batch_size: int, rekognition_ms: float, work: Path) -> dict[str, Any]:
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    quiet_lambda_logs()
    cloud = start_local_cloud(work / "cloud", detector="nanodet", batch_size=batch_size)
    try:
        for name, value in cloud.environment().items():
            if name in LAMBDA_VARIABLES or name.startswith("AWS_"):
                os.environ[name] = value
        stream = "fleet-load"
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream)
        jpegs = real_jpegs(width, height)
        detect_seconds = time_detector(cloud.models.models)
        batches = BatchLog()
        handler = batches.timed(load_handler())
        stop = threading.Event()
        pollers = [SinglePoller(shard["ShardId"], stream, handler, batch_size, work / f"checkpoint-{i}.json", 3)
                   for i, shard in enumerate(kinesis.list_shards(StreamName=stream)["Shards"])]
        poll_threads = [threading.Thread(target=p.run_forever, args=(stop, 0.1), daemon=True) for p in pollers]
        sent: Counter = Counter()
        rate = fps * fraction
        senders = [threading.Thread(target=site_sender, args=(f"site-{i + 1:03d}", masters, rate, seconds, jpegs, stream,
                                                               sent, stop, width, height), daemon=True) for i in range(sites)]
        started = time.monotonic()
        for thread in poll_threads + senders:
            thread.start()
        for thread in senders:
            thread.join()
        send_window = time.monotonic() - started
        total = sum(sent.values())
        deadline = time.monotonic() + max(180.0, seconds * 8)
        table = cloud.outputs["FramesTableName"]
        while sum(items_per_site(table).values()) < total and time.monotonic() < deadline:
            time.sleep(2.0)  # every record's frame item written (a retried record counts once)
        drained = time.monotonic() - started
        stop.set()
        for thread in poll_threads:
            thread.join(timeout=30)
        per_shard = shard_records(stream)
        items = items_per_site(table)
        objects = s3_objects(cloud.outputs["FramesBucketName"])
    finally:
        cloud.stop()
    return summarise(sites, shards, seconds, masters, fps, fraction, send_window, drained, sent, per_shard, batches, items, objects,
                     detect_seconds, rekognition_ms)


def time_detector(models: Any) -> list[float]:
    """The local detector's own time per frame (inside its lock), kept apart from the handler's."""
    seconds: list[float] = []
    detector = models.detector
    inner = detector.detect

    def timed(frame: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(frame)
        finally:
            seconds.append(time.perf_counter() - started)

    detector.detect = timed
    return seconds


def items_per_site(table: str) -> Counter:
    dynamodb = boto3.client("dynamodb")
    counts: Counter = Counter()
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if item.get("kind", {}).get("S") == "frame":
                counts[item["site"]["S"]] += 1
    return counts


def s3_objects(bucket: str) -> int:
    s3 = boto3.client("s3")
    return sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def summarise(sites: int, shards: int, seconds: float, masters: int, fps: float, fraction: float, send_window: float,
              drained: float, sent: Counter, per_shard: dict[str, list[dict]], batches: BatchLog, items: Counter,
              objects: int, detect_seconds: list[float], rekognition_ms: float) -> dict[str, Any]:
    shard_rows = []
    for shard_id, records in sorted(per_shard.items()):
        size = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in records)
        shard_rows.append({"shard": shard_id, "records": len(records), "records_per_s": len(records) / send_window,
                           "mb_per_s": size / send_window / 1e6, "sites": len({r["PartitionKey"].split("/")[0] for r in records})})
    total = sum(sent.values())
    record_bytes = float(np.mean([len(r["Data"]) for rs in per_shard.values() for r in rs])) if total else 0.0
    seconds_per_record = sum(batches.seconds) / max(1, sum(batches.sizes))
    detect_per_record = float(np.mean(detect_seconds)) if detect_seconds else 0.0
    overhead = max(0.0, seconds_per_record - detect_per_record)
    in_aws = overhead + rekognition_ms / 1000  # the handler's measured own work + an assumed DetectLabels latency
    site_rate = masters * fps * fraction
    per_shard_by = {
        "Kinesis records/s": SHARD_RECORDS_PER_S / site_rate,
        "Kinesis MB/s": SHARD_BYTES_PER_S / (site_rate * record_bytes) if record_bytes else math.inf,
        f"Lambda (parallelization {MAX_PARALLELIZATION})": MAX_PARALLELIZATION / (site_rate * in_aws),
    }
    binding = min(per_shard_by, key=lambda key: per_shard_by[key])
    per_shard_sites = int(per_shard_by[binding])
    stack_sites = int(LAMBDA_ACCOUNT_CONCURRENCY / (site_rate * in_aws))
    return {
        "sites": sites, "shards": shards, "seconds": seconds, "masters_per_site": masters, "fps": fps, "send_fraction": fraction,
        "records_sent": total, "records_processed": sum(items.values()), "records_delivered": sum(batches.sizes),
        "drained_s": drained,
        "record_bytes_mean": record_bytes, "per_shard": shard_rows,
        "batches": len(batches.sizes), "batch_size_mean": float(np.mean(batches.sizes)) if batches.sizes else 0.0,
        "batch_latency_p50_ms": float(np.percentile(batches.seconds, 50) * 1000) if batches.seconds else 0.0,
        "batch_latency_p95_ms": float(np.percentile(batches.seconds, 95) * 1000) if batches.seconds else 0.0,
        "handler_ms_per_record": seconds_per_record * 1000,
        "handler_records_per_s_per_shard": 1.0 / seconds_per_record if seconds_per_record else 0.0,
        "local_detector_ms_per_record": detect_per_record * 1000, "handler_overhead_ms_per_record": overhead * 1000,
        "assumed_rekognition_ms": rekognition_ms, "lambda_ms_per_record_in_aws": in_aws * 1000,
        "dynamodb_items_per_site": dict(sorted(items.items())), "s3_objects": objects,
        "sent_per_site": dict(sorted(sent.items())),
        "site_records_per_s": site_rate, "sites_per_shard": per_shard_sites, "sites_per_shard_limit": binding,
        "sites_per_stack_at_default_concurrency": stack_sites,
    }


def print_report(result: dict[str, Any]) -> None:
    print(f"cloud load: {result['sites']} sites x {result['masters_per_site']} masters at {result['fps']:g} fps, send fraction "
          f"{result['send_fraction']:.2%} ({result['site_records_per_s']:.2f} records/s per site), {result['shards']} shards, "
          f"{result['seconds']:g} s; {result['records_sent']} records sent, {result['records_processed']} with their frame item "
          f"({result['records_delivered']} deliveries to the handler, retries included) "
          f"(all done {result['drained_s']:.1f} s after the start)")
    for row in result["per_shard"]:
        print(f"  {row['shard']}: {row['records']} records from {row['sites']} sites, {row['records_per_s']:.1f} records/s, "
              f"{row['mb_per_s']:.3f} MB/s")
    print(f"  Lambda batches: {result['batches']}, mean size {result['batch_size_mean']:.1f}, latency p50 "
          f"{result['batch_latency_p50_ms']:.0f} ms, p95 {result['batch_latency_p95_ms']:.0f} ms; "
          f"{result['handler_ms_per_record']:.0f} ms of handler per record = {result['handler_records_per_s_per_shard']:.1f} "
          "records/s per shard at parallelization 1 on this CPU")
    print(f"  of which the local detector {result['local_detector_ms_per_record']:.0f} ms; the handler's own work (decode, "
          f"S3 put, DynamoDB writes, SQS, moto) {result['handler_overhead_ms_per_record']:.0f} ms per record; in AWS with "
          f"DetectLabels at {result['assumed_rekognition_ms']:g} ms (assumed): {result['lambda_ms_per_record_in_aws']:.0f} ms per record")
    items = result["dynamodb_items_per_site"]
    print(f"  DynamoDB frame items per site: min {min(items.values(), default=0)}, max {max(items.values(), default=0)} "
          f"(sent per site {min(result['sent_per_site'].values(), default=0)}-{max(result['sent_per_site'].values(), default=0)}); "
          f"S3 objects {result['s3_objects']}")
    print(f"  one shard carries {result['sites_per_shard']} such sites (bound by {result['sites_per_shard_limit']}); "
          f"one stack at the default 1,000 concurrent Lambdas carries {result['sites_per_stack_at_default_concurrency']} sites")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--masters", type=int, default=2, help="master cameras per site (default 2, the 2019 case)")
    parser.add_argument("--fps", type=float, default=15.0, help="master camera frame rate (default 15)")
    parser.add_argument("--send-fraction", type=float, default=0.0448,
                        help="share of master frames sent (default 0.0448, measured: docs/sampling.md)")
    parser.add_argument("--size", default="1280x720", help="sampled frame size (default 1280x720)")
    parser.add_argument("--batch-size", type=int, default=10, help="Lambda batch size (the stack's BatchSize, default 10)")
    parser.add_argument("--rekognition-ms", type=float, default=250.0,
                        help="DetectLabels latency assumed for the sizing in AWS (default 250 ms; not measured here)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="hybridcam-cloud-load-") as tmp:
        result = run_load(args.sites, args.shards, args.seconds, args.masters, args.fps, args.send_fraction, width, height,
                          args.batch_size, args.rekognition_ms, Path(tmp))
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["records_processed"] >= result["records_sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
