"""The function's entry point: a Kinesis batch through Powertools' BatchProcessor, one record at a time.

Deployed handler: ``detector_lambda.handler.lambda_handler``. Per record (see pipeline.py for the steps):

- a record that can never succeed (RecordError: bad bytes, schema, image) is written with its payload
  to the stack's dead-letter queue and acknowledged, so it does not block its shard;
- any other failure is logged with its traceback and reported in ``batchItemFailures``; the event
  source retries the batch from the lowest failed sequence number (records after it come again and
  are skipped by the pipeline's idempotency check);
- when less than RECORD_RESERVE_S of the invocation remains, no further record is started: the rest
  are reported as failures, so a slow batch never runs into the function timeout;
- a heartbeat record (the edge's health summary, fleet.py) is written to the fleet table; a malformed one,
  or any when no FLEET_TABLE is set, is logged, counted (``dropped_heartbeats``) and acknowledged;
- when every record of the batch failed, BatchProcessor raises, so the invocation counts in the
  Errors metric (and its alarm) and the event source retries it (halving it, BisectBatchOnFunctionError).

Each log line while a record is processed carries ``sequence_number``, ``frame_id`` and ``camera``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from detector_lambda.dead_letters import DeadLetters
from detector_lambda.fleet import FleetTable
from detector_lambda.logs import logger
from detector_lambda.pipeline import Pipeline, build_pipeline
from detector_lambda.records import HeartbeatError, HeartbeatRecord, RecordError, decode_any, sequence_number_of
from detector_lambda.settings import LambdaSettings, load_settings


class OutOfTime(RuntimeError):
    """Not started: too little of the invocation was left (reported for a retry)."""


class DetectorFunction:
    """The function as one warm Lambda container holds it: settings and clients made at the first call."""

    def __init__(self, settings: LambdaSettings | None = None, pipeline: Pipeline | None = None) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._dead_letters: DeadLetters | None = None
        self._fleet: FleetTable | None = None
        self.counters: Counter[str] = Counter()
        """heartbeats stored / dropped_heartbeats / stale_heartbeats over this container's life"""
        self.processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        self._out_of_time = False
        self._entry = logger.inject_lambda_context(self.handle, clear_state=True)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._entry(event, context)

    @property
    def settings(self) -> LambdaSettings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:  # cold start: read the settings and open the clients once
            logger.info("detector Lambda starting: %s", self.settings.describe())
            self._pipeline = build_pipeline(self.settings)
        return self._pipeline

    def start(self) -> None:
        """Read the settings and open the clients, so a configuration error fails the invocation, not each record."""
        _ = self.pipeline, self.dead_letters

    @property
    def dead_letters(self) -> DeadLetters:
        if self._dead_letters is None:
            pipeline = self.pipeline
            self._dead_letters = DeadLetters(boto3.client("sqs"), self.settings.failed_records_queue_url,
                                             pipeline.store.s3, self.settings.frames_bucket,
                                             pipeline.table.dynamodb, self.settings.frames_table)
        return self._dead_letters

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        self._out_of_time = False
        self.start()
        response = process_partial_response(event=event, record_handler=self.process_record,
                                            processor=self.processor, context=context)
        failed = len(response.get("batchItemFailures", []))
        if failed:
            logger.warning("%d of %d records reported in batchItemFailures", failed, len(event.get("Records") or []))
        return dict(response)

    def process_record(self, record: KinesisStreamRecord, lambda_context: Any = None) -> None:
        raw = record.raw_event
        with logger.append_context_keys(sequence_number=sequence_number_of(raw)):
            self._check_time(lambda_context)
            try:
                decoded = decode_any(raw)
            except HeartbeatError as error:
                self._drop_heartbeat(str(error))
                return
            except RecordError as error:
                self._dead_letter(raw, error)
                return
            if isinstance(decoded, HeartbeatRecord):
                self._store_heartbeat(decoded)
                return
            frame_record = decoded
            frame = frame_record.frame
            with logger.append_context_keys(frame_id=frame.frame_id, camera=frame.camera_id):
                try:
                    self.pipeline.process(frame_record)
                except RecordError as error:
                    self._dead_letter(raw, error)
                except Exception:
                    logger.exception("record failed; reported in batchItemFailures for a retry")
                    raise

    @property
    def fleet(self) -> FleetTable | None:
        if self._fleet is None and self.settings.fleet_table:
            self._fleet = FleetTable(self.pipeline.table.dynamodb, self.settings.fleet_table)
        return self._fleet

    def _store_heartbeat(self, record: HeartbeatRecord) -> None:
        heartbeat = record.heartbeat
        if self.fleet is None:
            self._drop_heartbeat(f"no FLEET_TABLE is set (heartbeat of {heartbeat.site}/{heartbeat.server})")
            return
        if self.fleet.put_heartbeat(heartbeat, time.time()):
            self.counters["heartbeats"] += 1
        else:
            self.counters["stale_heartbeats"] += 1
            logger.info("heartbeat of %s/%s sent at %.3f is older than the stored one; not written",
                        heartbeat.site, heartbeat.server, heartbeat.sent_ts)

    def _drop_heartbeat(self, reason: str) -> None:
        self.counters["dropped_heartbeats"] += 1
        logger.warning("heartbeat dropped (%d so far): %s", self.counters["dropped_heartbeats"], reason)

    def _check_time(self, lambda_context: Any) -> None:
        if self._out_of_time:
            raise OutOfTime("not started: the invocation is out of time")
        remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return
        left_ms = int(remaining())
        if left_ms < self.settings.record_reserve_s * 1000:
            self._out_of_time = True
            logger.warning("%d ms of the invocation left (reserve %g s): this and the remaining records are "
                           "reported for a retry", left_ms, self.settings.record_reserve_s)
            raise OutOfTime(f"not started: {left_ms} ms left")

    def _dead_letter(self, raw: dict[str, Any], error: RecordError) -> None:
        if not self.dead_letters.enabled:
            logger.error("record failed permanently: %s; no FAILED_RECORDS_QUEUE_URL, so it is reported as "
                         "failed and left to the event source's on-failure destination", error)
            raise error
        try:
            sent = self.dead_letters.send(raw, str(error))
        except Exception:
            logger.exception("record failed permanently (%s) and could not be written to the dead-letter queue; "
                             "reported for a retry", error)
            raise
        if sent is None:
            logger.info("record failed permanently: %s; already in the dead-letter queue (a re-delivery)", error)
            return
        logger.error("record failed permanently: %s; written with its payload to the dead-letter queue and "
                     "acknowledged", error)


_function = DetectorFunction()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The deployed entry point (one DetectorFunction per warm container)."""
    return _function(event, context)


def cold_start(settings: LambdaSettings | None = None) -> DetectorFunction:
    """A fresh function, as a new container would start it (the local event source and tests use this)."""
    return DetectorFunction(settings)
