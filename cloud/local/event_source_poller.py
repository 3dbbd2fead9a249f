"""A local Kinesis -> Lambda event source mapping, for moto (which cannot run Lambda code without Docker).

Public API (used by the end-to-end tests and ``hybridcam cloud poll``):

- ``load_handler() -> callable(event, context)``: imports cloud/lambda/handler.py by path (a fresh
  cold start on every call, so the handler reads the environment as it is now).
- ``EventSourcePoller(stream_name, handler, batch_size, checkpoint_path, max_retries)``
  ``.run_once() -> int`` reads every shard up to its end and returns the records the handler finished;
  ``.run_forever(stop_event)`` polls until the event is set. ``.dead_lettered`` counts records given up.
- ``kinesis_event(records, stream_arn, region, shard_id)``: the exact event AWS hands a Kinesis-triggered
  Lambda, built from GetRecords output.

Semantics follow AWS's event source mapping with ReportBatchItemFailures: the handler's batch is at
most ``batch_size`` records; on ``batchItemFailures`` the records before the first failed sequence
number are checkpointed and the batch is retried from it; a handler exception or an unknown item
identifier fails the whole batch. After ``max_retries`` retries the failing record goes to the
on-failure destination (a log line, a JSON-lines dead-letter file and, when given, an SQS queue) and
the shard moves on, so it is never blocked. Checkpoints (last finished sequence number per shard) are
kept in a small JSON file, so a restarted poller does not replay finished records; the first run of a
shard starts at TRIM_HORIZON.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

log = logging.getLogger("hybridcam.cloud.poller")

LAMBDA_DIR = Path(__file__).resolve().parents[1] / "lambda"
LAMBDA_MODULES = ("handler", "records", "detectors", "alerts", "storage", "config", "face_watch")
LOCAL_IDENTITY_ARN = "arn:aws:iam::123456789012:role/hybridcam-local-event-source"

Handler = Callable[[dict[str, Any], Any], Any]


def load_handler() -> Handler:
    """Import cloud/lambda/handler.py by path (the folder is not a package) and return lambda_handler."""
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    for name in LAMBDA_MODULES:  # a fresh import is a fresh cold start
        sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location("handler", LAMBDA_DIR / "handler.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the Lambda handler from {LAMBDA_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
    return module.lambda_handler  # type: ignore[no-any-return]


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0.0)


def kinesis_event(records: list[dict[str, Any]], stream_arn: str, region: str, shard_id: str,
                  identity_arn: str = LOCAL_IDENTITY_ARN) -> dict[str, Any]:
    """GetRecords records -> the event a Kinesis-triggered Lambda receives."""
    return {"Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": _epoch(record.get("ApproximateArrivalTimestamp")),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": identity_arn,
            "awsRegion": region,
            "eventSourceARN": stream_arn,
        }
        for record in records
    ]}


@dataclass
class LocalContext:
    """The parts of the Lambda context object a handler may read."""

    function_name: str = "hybridcam-detector-local"
    memory_limit_in_mb: int = 1024
    timeout_s: float = 60.0
    aws_request_id: str = ""
    started: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


class Checkpoints:
    """Last finished sequence number per shard, in a JSON file written atomically."""

    def __init__(self, path: Path, stream_name: str) -> None:
        self.path = path
        self.stream_name = stream_name
        self._all: dict[str, dict[str, str]] = {}
        if path.exists():
            try:
                self._all = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("checkpoint file %s is unreadable; starting every shard at TRIM_HORIZON", path)

    def get(self, shard_id: str) -> str | None:
        return self._all.get(self.stream_name, {}).get(shard_id)

    def set(self, shard_id: str, sequence_number: str) -> None:
        self._all.setdefault(self.stream_name, {})[shard_id] = sequence_number
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._all, indent=1))
        os.replace(temporary, self.path)


class EventSourcePoller:
    def __init__(
        self,
        stream_name: str,
        handler: Handler,
        batch_size: int = 100,
        checkpoint_path: str | os.PathLike[str] = "poller-checkpoints.json",
        max_retries: int = 3,
        *,
        retry_delay_s: float = 0.2,
        dead_letter_path: str | os.PathLike[str] | None = None,
        dead_letter_queue_url: str | None = None,
        kinesis: Any = None,
        sqs: Any = None,
        identity_arn: str = LOCAL_IDENTITY_ARN,
    ) -> None:
        if batch_size < 1 or max_retries < 0:
            raise ValueError(f"batch_size must be >= 1 and max_retries >= 0, got {batch_size} and {max_retries}")
        self.stream_name = stream_name
        self.handler = handler
        self.batch_size = min(batch_size, 10000)
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.kinesis = kinesis or boto3.client("kinesis")
        self.checkpoints = Checkpoints(Path(checkpoint_path), stream_name)
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else Path(checkpoint_path).with_suffix(".dead-letter.jsonl")
        self.dead_letter_queue_url = dead_letter_queue_url
        self.sqs = sqs or (boto3.client("sqs") if dead_letter_queue_url else None)
        self.identity_arn = identity_arn
        self.region = self.kinesis.meta.region_name
        self.stream_arn = self.kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
        self.dead_lettered = 0
        self.invocations = 0

    def describe(self) -> str:
        return (f"polling Kinesis stream {self.stream_name} in batches of {self.batch_size}, {self.max_retries} "
                f"retries, checkpoints in {self.checkpoints.path}, dead letters to {self.dead_letter_path}"
                + (f" and {self.dead_letter_queue_url}" if self.dead_letter_queue_url else ""))

    def run_once(self) -> int:
        shards = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        return sum(self._drain_shard(shard["ShardId"]) for shard in shards)

    def run_forever(self, stop_event: threading.Event, idle_s: float = 0.5) -> None:
        while not stop_event.is_set():
            try:
                if self.run_once() == 0:
                    stop_event.wait(idle_s)
            except Exception as error:  # the poller outlives a flaky local server
                log.error("polling %s failed: %s: %s; retrying", self.stream_name, type(error).__name__, error)
                stop_event.wait(max(idle_s, 1.0))

    # -- one shard ---------------------------------------------------------------------------
    def _iterator(self, shard_id: str) -> str:
        checkpoint = self.checkpoints.get(shard_id)
        options: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
            if checkpoint else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        response = self.kinesis.get_shard_iterator(StreamName=self.stream_name, ShardId=shard_id, **options)
        return str(response["ShardIterator"])

    def _drain_shard(self, shard_id: str) -> int:
        iterator: str | None = self._iterator(shard_id)
        finished = 0
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = response.get("Records", [])
            if not records:
                break
            finished += self._deliver(shard_id, records)
            iterator = response.get("NextShardIterator")
        return finished

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> int:
        """Hand one batch to the handler, retrying from the first failure; returns records finished."""
        pending, retries, finished = records, 0, 0
        while pending:
            failed_at, reason = self._invoke(shard_id, pending)
            if failed_at is None:
                self.checkpoints.set(shard_id, pending[-1]["SequenceNumber"])
                return finished + len(pending)
            if failed_at > 0:
                finished += failed_at
                self.checkpoints.set(shard_id, pending[failed_at - 1]["SequenceNumber"])
                pending, retries = pending[failed_at:], 0
            if retries >= self.max_retries:
                self._dead_letter(shard_id, pending[0], reason, retries + 1)
                self.checkpoints.set(shard_id, pending[0]["SequenceNumber"])
                pending, retries = pending[1:], 0
                continue
            retries += 1
            log.warning("shard %s: record %s failed (%s); retry %d of %d", shard_id,
                        pending[0]["SequenceNumber"], reason, retries, self.max_retries)
            time.sleep(self.retry_delay_s)
        return finished

    def _invoke(self, shard_id: str, batch: list[dict[str, Any]]) -> tuple[int | None, str]:
        """Index of the first failed record in the batch (None when all succeeded) and why."""
        event = kinesis_event(batch, self.stream_arn, self.region, shard_id, self.identity_arn)
        context = LocalContext(aws_request_id=str(uuid.uuid4()), started=time.monotonic())
        self.invocations += 1
        try:
            response = self.handler(event, context)
        except Exception as error:
            log.error("handler raised %s: %s; the whole batch failed", type(error).__name__, error)
            return 0, f"function error {type(error).__name__}"
        failures = response.get("batchItemFailures") or [] if isinstance(response, dict) else []
        if not failures:
            return None, ""
        positions = {record["SequenceNumber"]: index for index, record in enumerate(batch)}
        identifiers = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures]
        if any(identifier not in positions for identifier in identifiers):
            return 0, "batchItemFailures named a record not in the batch"
        return min(positions[identifier] for identifier in identifiers), "reported in batchItemFailures"

    def _dead_letter(self, shard_id: str, record: dict[str, Any], reason: str, attempts: int) -> None:
        entry = {
            "stream": self.stream_name, "streamArn": self.stream_arn, "shardId": shard_id,
            "sequenceNumber": record["SequenceNumber"], "partitionKey": record["PartitionKey"],
            "approximateArrivalTimestamp": _epoch(record.get("ApproximateArrivalTimestamp")),
            "data": base64.b64encode(record["Data"]).decode("ascii"), "reason": reason, "attempts": attempts,
            "deadLetteredAt": time.time(),
        }
        self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter_path.open("a") as file:
            file.write(json.dumps(entry) + "\n")
        if self.dead_letter_queue_url and self.sqs is not None:
            self.sqs.send_message(QueueUrl=self.dead_letter_queue_url, MessageBody=json.dumps(entry))
        self.dead_lettered += 1
        log.error("shard %s: record %s gave up after %d attempts (%s); sent to the dead letter %s",
                  shard_id, record["SequenceNumber"], attempts, reason, self.dead_letter_path)
