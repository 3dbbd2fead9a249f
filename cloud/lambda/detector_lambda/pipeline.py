"""One frame record's way through the function, as a short pipeline of named steps.

    stored_item (a retry: reuse what the first attempt stored) or analyse (fetch image -> detect ->
    store frame in S3 -> store item in DynamoDB) -> claim alerts -> send result -> publish alerts
    -> search faces (only with FACE_SEARCH enabled, only frames the edge marked; face_watch.py)

The frame's item is looked up first, so a retried record never pays for detection or the S3 put
again. The result goes to the edge before any SNS call, so an SNS outage never holds a result back;
each side effect sets a progress flag on the item (alerts_claimed, result_sent, alerts_done, faces_done) and a
retry skips what is flagged. A new step (a face search, say) is one more method called from
``process`` with the item it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from detector_lambda.alerts import Alerter, AlertRules, alerted_labels
from detector_lambda.detectors import Backoff, FoundLabel, FrameImage, LabelDetector, RekognitionDetector, SageMakerDetector, client_config
from detector_lambda.face_watch import FaceWatch, build_face_watch
from detector_lambda.logs import logger
from detector_lambda.records import FrameRecord
from detector_lambda.settings import LambdaSettings
from detector_lambda.storage import FrameItem, FrameStore, FrameTable
from detector_lambda.super_resolution import Restorer, scaled_back
from shared.schemas import CloudFrame, CloudResult, Detection, encode_text


@dataclass
class Pipeline:
    settings: LambdaSettings
    detector: LabelDetector
    store: FrameStore
    table: FrameTable
    alerter: Alerter
    sqs: Any
    clock: Callable[[], float] = time.time
    face_watch: FaceWatch | None = None
    restorer: Restorer | None = None

    def process(self, record: FrameRecord) -> FrameItem:
        item = self.stored_item(record) or self.analyse(record)
        item = self.claim_alerts(record, item)
        self.send_result(record, item)
        self.publish_alerts(record, item)
        self.search_faces(record, item)
        return item

    # -- steps -------------------------------------------------------------------------------
    def stored_item(self, record: FrameRecord) -> FrameItem | None:
        item = self.table.find_frame(record.frame.frame_id)
        if item is not None:
            logger.info("frame was already stored (a retry); finishing only what is left")
        return item

    def analyse(self, record: FrameRecord) -> FrameItem:
        image = self.fetch_image(record)
        labels = self.detect(record, image)
        s3_key = self.store.store_frame(record.frame, image)
        return self.table.put_frame(record.frame, labels, s3_key, self.detector.backend, self.detector.model,
                                    self.clock())

    def detect(self, record: FrameRecord, image: FrameImage) -> list[FoundLabel]:
        """Detection, on the frame restored to full size first when the uplink shrank it."""
        if self.restorer is None:
            return self.detector.detect(image)
        restored, factor = self.restorer.restore(record.frame, image)
        return scaled_back(self.detector.detect(restored), factor)

    def fetch_image(self, record: FrameRecord) -> FrameImage:
        frame = record.frame
        needs_bytes = frame.jpeg is not None or (self.restorer is not None and frame.shrink_factor > 1) or self.detector.needs_bytes(
            FrameImage(frame.width, frame.height, s3_bucket=frame.s3_bucket, s3_key=frame.s3_key))
        return self.store.fetch_image(frame, needs_bytes)

    def claim_alerts(self, record: FrameRecord, item: FrameItem) -> FrameItem:
        if item.alerts_claimed or item.result_sent:
            return item
        item.alerts = self.alerter.claim(record.frame, item.labels, self.clock())
        item.alerts_claimed = True
        if item.alerts:  # with nothing claimed a retry may simply claim again: no write needed
            # alert_site puts the frame in the sparse site-alerts index the fleet console reads alerts from
            self.table.mark(item.frame_id, alerts=item.alerts, alerts_claimed=True, alert_site=record.frame.site)
        return item

    def send_result(self, record: FrameRecord, item: FrameItem) -> None:
        if item.result_sent:
            return
        frame = record.frame
        result = CloudResult(
            site=frame.site, frame_id=frame.frame_id, camera_id=frame.camera_id, seq=frame.seq,
            capture_ts=frame.capture_ts, processed_ts=item.processed_ts, width=frame.width, height=frame.height,
            backend=self.settings.detector_backend, model=item.model, detections=detections_of(item.labels, frame),
            s3_key=item.s3_key, alerts=alerted_labels(item.alerts),
        )
        self.sqs.send_message(
            QueueUrl=self.settings.results_queue_url, MessageBody=encode_text(result),
            MessageAttributes={
                "frame_id": {"DataType": "String", "StringValue": frame.frame_id},
                "camera_id": {"DataType": "String", "StringValue": frame.camera_id},
            },
        )
        item.result_sent = True
        self.table.mark(item.frame_id, result_sent=True)

    def publish_alerts(self, record: FrameRecord, item: FrameItem) -> None:
        if item.alerts_done or not item.alerts:
            return
        self.alerter.publish(record.frame, item.labels, item.alerts, item.s3_key, self.clock())
        item.alerts_done = True
        self.table.mark(item.frame_id, alerts_done=True)


    def search_faces(self, record: FrameRecord, item: FrameItem) -> None:
        """The watch-list step. It reads the frame's image itself: a retry skipped analyse, so it has none.

        Inline bytes are used as they came; a claim-checked frame is read back from its stored copy
        (item.s3_key in the frames bucket), and only when the frame is searched. The step is idempotent
        (conditional match items, a cooldown claim per person, saved progress), and once done the item's
        ``faces_done`` flag makes a retry skip it: no Rekognition call is paid twice.
        """
        if self.face_watch is None or not self.face_watch.wants(record.frame) or item.faces_done:
            return
        frame = record.frame
        image = FrameImage(frame.width, frame.height, jpeg=frame.jpeg, s3_bucket=self.settings.frames_bucket,
                           s3_key=item.s3_key)
        self.face_watch.process(frame, image, item.processed_ts)
        item.faces_done = True
        self.table.mark(item.frame_id, faces_done=True)


def detections_of(labels: list[FoundLabel], frame: CloudFrame | None = None) -> list[Detection]:
    """Boxed labels as edge Detections (score 0-1), each with the edge track it is about when the frame
    says which objects the edge tracked; frame-level labels stay in the DynamoDB item only."""
    return [
        Detection(label=label.name, score=min(max(label.confidence / 100.0, 0.0), 1.0), box=label.box,
                  track_id=frame.track_of(label.box) if frame is not None else None)
        for label in labels if label.box is not None
    ]


def build_detector(settings: LambdaSettings, backoff: Backoff | None = None) -> LabelDetector:
    backoff = backoff or Backoff()
    if settings.detector_backend == "sagemaker":
        return SageMakerDetector(boto3.client("sagemaker-runtime", config=client_config()),
                                 settings.sagemaker_endpoint, settings.min_confidence, backoff)
    return RekognitionDetector(boto3.client("rekognition", config=client_config()),
                               settings.max_labels, settings.min_confidence, backoff)


def build_pipeline(settings: LambdaSettings, detector: LabelDetector | None = None) -> Pipeline:
    dynamodb = boto3.client("dynamodb")
    rules = AlertRules(settings.watch_labels, settings.alert_confidence, settings.alert_cooldown_s)
    return Pipeline(
        settings=settings,
        detector=detector or build_detector(settings),
        store=FrameStore(boto3.client("s3"), settings.frames_bucket),
        table=FrameTable(dynamodb, settings.frames_table, settings.item_ttl_days),
        alerter=Alerter(dynamodb, settings.frames_table, boto3.client("sns"), settings.alert_topic_arn,
                        settings.frames_bucket, rules),
        sqs=boto3.client("sqs"),
        face_watch=build_face_watch(settings),
        restorer=build_restorer(settings),
    )


def build_restorer(settings: LambdaSettings) -> Restorer | None:
    if not settings.super_resolution_endpoint:
        return None
    return Restorer(boto3.client("sagemaker-runtime", config=client_config()), settings.super_resolution_endpoint,
                    settings.frames_bucket, settings.super_resolution_model_prefix)
