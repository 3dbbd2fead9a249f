"""The detector Lambda: Kinesis CloudFrame records -> labels -> S3, DynamoDB, SNS alerts, SQS results.

Each record runs a short pipeline of named steps:
decode -> fetch image (inline or claim check in S3) -> detect -> store frame -> store item -> alerts
-> send result. A record that fails any step is logged with its reason and reported in
``batchItemFailures`` (the event source retries from it); the other records carry on.

Retries are idempotent: the frame item is written with a conditional put; when it already exists
the handler reuses what was stored and skips the side effects whose progress flags (alerts_done,
result_sent) are set. Alerts additionally claim a conditional cooldown item (see alerts.py).

Entry point: ``handler.lambda_handler(event, context)``. Configuration: see config.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from alerts import Alerter, AlertRules
from config import LambdaConfig, load_config
from detectors import Backoff, FoundLabel, FrameImage, LabelDetector, RekognitionDetector, SageMakerDetector, client_config
from face_watch import FaceWatch, build_face_watch
from records import FrameRecord, RecordError, decode_record, sequence_number_of
from shared.schemas import CloudResult, Detection, encode_text
from storage import FrameItem, FrameStore, FrameTable

log = logging.getLogger("hybridcam.cloud.handler")
logging.getLogger("hybridcam.cloud").setLevel(logging.INFO)


@dataclass
class Pipeline:
    config: LambdaConfig
    detector: LabelDetector
    store: FrameStore
    table: FrameTable
    alerter: Alerter
    sqs: Any
    clock: Callable[[], float] = time.time
    face_watch: FaceWatch | None = None

    # -- steps -------------------------------------------------------------------------------
    def decode(self, record: Any) -> FrameRecord:
        return decode_record(record)

    def fetch_image(self, record: FrameRecord) -> FrameImage:
        frame = record.frame
        needs_bytes = frame.jpeg is not None or self.detector.needs_bytes(
            FrameImage(frame.width, frame.height, s3_bucket=frame.s3_bucket, s3_key=frame.s3_key))
        return self.store.fetch_image(frame, needs_bytes)

    def detect(self, image: FrameImage) -> list[FoundLabel]:
        return self.detector.detect(image)

    def store_frame(self, record: FrameRecord, image: FrameImage) -> str:
        return self.store.store_frame(record.frame, image)

    def store_item(self, record: FrameRecord, labels: list[FoundLabel], s3_key: str) -> FrameItem:
        return self.table.put_frame(record.frame, labels, s3_key, self.detector.backend, self.detector.model, self.clock())

    def alerts(self, record: FrameRecord, item: FrameItem) -> list[str]:
        if item.alerts_done:
            return item.alerts
        raised = self.alerter.raise_alerts(record.frame, item.labels, item.s3_key, self.clock())
        self.table.mark(item.frame_id, alerts_done=True, alerts=raised)
        return raised

    def send_result(self, record: FrameRecord, item: FrameItem, alerts: list[str]) -> None:
        if item.result_sent:
            return
        frame = record.frame
        result = CloudResult(
            site=frame.site, frame_id=frame.frame_id, camera_id=frame.camera_id, seq=frame.seq,
            capture_ts=frame.capture_ts, processed_ts=item.processed_ts, width=frame.width, height=frame.height,
            backend=self.detector.backend,  # type: ignore[arg-type]
            model=item.model, detections=detections_of(item.labels), s3_key=item.s3_key, alerts=alerts,
        )
        self.sqs.send_message(
            QueueUrl=self.config.results_queue_url, MessageBody=encode_text(result),
            MessageAttributes={
                "frame_id": {"DataType": "String", "StringValue": frame.frame_id},
                "camera_id": {"DataType": "String", "StringValue": frame.camera_id},
            },
        )
        self.table.mark(item.frame_id, result_sent=True)

    # -- the pipeline ------------------------------------------------------------------------
    def process(self, raw_record: Any) -> None:
        record = self.decode(raw_record)
        image = self.fetch_image(record)
        labels = self.detect(image)
        s3_key = self.store_frame(record, image)
        item = self.store_item(record, labels, s3_key)
        if not item.created:
            log.info("frame %s was already stored (retry); finishing only what is left", item.frame_id)
        alerts = self.alerts(record, item)
        self.send_result(record, item, alerts)
        if self.face_watch is not None:
            self.face_watch.process(record.frame, image, item.processed_ts)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        failures = []
        records = event.get("Records") or []
        for raw_record in records:
            sequence_number = sequence_number_of(raw_record)
            try:
                self.process(raw_record)
            except RecordError as error:
                log.error("record %s failed permanently: %s", sequence_number or "?", error)
                failures.append(sequence_number)
            except Exception as error:  # one record's AWS or model failure must not drop the others
                log.error("record %s failed: %s: %s", sequence_number or "?", type(error).__name__, error)
                log.debug("record failure", exc_info=True)
                failures.append(sequence_number)
        if failures:
            log.warning("%d of %d records failed; reported in batchItemFailures", len(failures), len(records))
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failures]}


def detections_of(labels: list[FoundLabel]) -> list[Detection]:
    """Boxed labels as edge Detections (score 0-1); frame-level labels stay in the DynamoDB item only."""
    return [
        Detection(label=label.name, score=min(max(label.confidence / 100.0, 0.0), 1.0), box=label.box)
        for label in labels if label.box is not None
    ]


def build_detector(config: LambdaConfig, backoff: Backoff = Backoff()) -> LabelDetector:
    if config.detector_backend == "sagemaker":
        return SageMakerDetector(boto3.client("sagemaker-runtime", config=client_config()),
                                 config.sagemaker_endpoint, config.min_confidence, backoff)
    return RekognitionDetector(boto3.client("rekognition", config=client_config()),
                               config.max_labels, config.min_confidence, backoff)


def build_pipeline(config: LambdaConfig, detector: LabelDetector | None = None) -> Pipeline:
    dynamodb = boto3.client("dynamodb")
    rules = AlertRules(config.watch_labels, config.alert_min_confidence, config.alert_cooldown_s)
    return Pipeline(
        config=config,
        detector=detector or build_detector(config),
        store=FrameStore(boto3.client("s3"), config.frames_bucket),
        table=FrameTable(dynamodb, config.frames_table, config.item_ttl_days),
        alerter=Alerter(dynamodb, config.frames_table, boto3.client("sns"), config.alert_topic_arn,
                        config.frames_bucket, rules),
        sqs=boto3.client("sqs"),
        face_watch=build_face_watch(config),
    )


_pipeline: Pipeline | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _pipeline
    if _pipeline is None:  # cold start: read the configuration and open clients once
        config = load_config()
        log.info("detector Lambda starting: %s", config.describe())
        _pipeline = build_pipeline(config)
    return _pipeline.handle(event)
