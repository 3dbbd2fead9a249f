"""Alert rules: a watch list of labels, a minimum confidence and a cooldown per camera and label.

The cooldown lives in the frames table as item ``cooldown#<camera>#<label>`` and is claimed with a
conditional put, so parallel shards and retried records never both alert: a claim succeeds only when
no cooldown exists, the old one has expired, or it is this frame's own unfinished claim (a retry after
a crash before the SNS publish was recorded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from detectors import FoundLabel
from shared.schemas import CloudFrame
from storage import to_dynamo, utc_iso

log = logging.getLogger("hybridcam.cloud.alerts")
COOLDOWN_PREFIX = "cooldown#"


@dataclass(frozen=True)
class AlertRules:
    watch_labels: frozenset[str]
    min_confidence: float
    cooldown_s: float

    def matches(self, labels: list[FoundLabel]) -> dict[str, float]:
        """Watched labels at or above the minimum confidence -> their best confidence."""
        best: dict[str, float] = {}
        for label in labels:
            if label.name.lower() in self.watch_labels and label.confidence >= self.min_confidence:
                best[label.name] = max(best.get(label.name, 0.0), label.confidence)
        return best


def alert_message(frame: CloudFrame, label: str, confidence: float, bucket: str, s3_key: str) -> str:
    # Short enough for one SMS segment in the common case; the S3 key lets email readers find the frame.
    return (f"hybridcam: {label} ({confidence:.0f}%) on {frame.camera_id} at {utc_iso(frame.capture_ts)} "
            f"- s3://{bucket}/{s3_key}")


class Alerter:
    def __init__(self, dynamodb: Any, table: str, sns: Any, topic_arn: str, bucket: str, rules: AlertRules) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.sns = sns
        self.topic_arn = topic_arn
        self.bucket = bucket
        self.rules = rules

    def raise_alerts(self, frame: CloudFrame, labels: list[FoundLabel], s3_key: str, now: float) -> list[str]:
        raised = []
        for label, confidence in sorted(self.rules.matches(labels).items()):
            if not self._claim_cooldown(frame, label, now):
                log.info("alert %s on %s suppressed: cooldown holds", label, frame.camera_id)
                continue
            self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=f"hybridcam alert: {label} on {frame.camera_id}"[:100],
                Message=alert_message(frame, label, confidence, self.bucket, s3_key),
                MessageAttributes={
                    "camera_id": {"DataType": "String", "StringValue": frame.camera_id},
                    "label": {"DataType": "String", "StringValue": label},
                    "frame_id": {"DataType": "String", "StringValue": frame.frame_id},
                },
            )
            self._mark_published(frame, label)
            raised.append(label)
            log.info("alert %s (%.0f%%) on %s published for frame %s", label, confidence, frame.camera_id, frame.frame_id)
        return raised

    def _cooldown_key(self, frame: CloudFrame, label: str) -> dict[str, Any]:
        return {"pk": {"S": f"{COOLDOWN_PREFIX}{frame.camera_id}#{label.lower()}"}}

    def _claim_cooldown(self, frame: CloudFrame, label: str, now: float) -> bool:
        until = now + self.rules.cooldown_s
        item = {
            **self._cooldown_key(frame, label), "kind": {"S": "cooldown"}, "camera": {"S": frame.camera_id},
            "label": {"S": label}, "frame_id": {"S": frame.frame_id}, "until_ts": to_dynamo(until),
            "expires_at": to_dynamo(int(until + 86400)),
        }
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression=("attribute_not_exists(pk) OR until_ts <= :now "
                                     "OR (frame_id = :frame AND attribute_not_exists(published))"),
                ExpressionAttributeValues={":now": to_dynamo(now), ":frame": {"S": frame.frame_id}},
            )
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def _mark_published(self, frame: CloudFrame, label: str) -> None:
        self.dynamodb.update_item(
            TableName=self.table, Key=self._cooldown_key(frame, label),
            UpdateExpression="SET published = :yes", ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
