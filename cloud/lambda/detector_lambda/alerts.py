"""Alert rules: a watch list of labels, a minimum confidence; one alert per tracked object and label,
else a cooldown per camera and label.

Where the frame says which objects the edge tracks (CloudFrame v2 ``tracks``), a watched label found
over a tracked object alerts once for that object's whole stay: the claim is the item
``cooldown#<site>#<camera>#<label>#track<id>``, held for TRACK_CLAIM_S (track ids are unique per camera and
not reused), so a person who stays ten minutes is one alert and a second person is a second alert, at
any time. A watched label over no tracked object (the edge missed it, does not track, or the label has
no box) uses the cooldown item ``cooldown#<site>#<camera>#<label>``: two sites may name a camera alike. A claim is named ``<label>`` or
``<label>#track<id>``. Alerting is two steps,
with the frame's result sent between them (so an SNS outage never holds a result back):

1. ``claim``: a conditional put reserves the cooldown for this frame. It succeeds only when no
   cooldown exists, the old one has expired, or it is this frame's own reservation not yet published
   (a retry), so parallel shards and retried records never both alert.
2. ``publish``: the reservation is marked ``publishing`` (conditionally: only once per frame) and then
   published on SNS. If SNS refuses, the reservation is deleted (released) and the error raised, so the
   retried record can alert and the camera is not silenced for the cooldown by an alert never sent. A
   process killed between the mark and the publish loses that alert rather than ever sending it twice:
   at most one alert per camera and label per cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from detector_lambda.detectors import FoundLabel
from detector_lambda.logs import logger
from detector_lambda.storage import to_dynamo
from shared.schemas import CloudFrame, utc_iso

COOLDOWN_PREFIX = "cooldown#"
TRACK_MARK = "#track"
TRACK_CLAIM_S = 86400.0
"""a tracked object's claim lasts this long (longer than any track lives)"""


def claim_label(claim: str) -> str:
    """The label a claim alerts on."""
    return claim.split(TRACK_MARK, 1)[0]


def alerted_labels(claims: list[str]) -> list[str]:
    """The labels some claims alert on, each once, in order."""
    return list(dict.fromkeys(claim_label(claim) for claim in claims))


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

    def claims(self, frame: CloudFrame, labels: list[FoundLabel]) -> dict[str, float]:
        """What this frame may alert on -> best confidence: ``label#track<id>`` for a watched label over a
        tracked object, ``label`` for one over none."""
        best: dict[str, float] = {}
        for label in labels:
            if label.name.lower() not in self.watch_labels or label.confidence < self.min_confidence:
                continue
            track_id = frame.track_of(label.box) if label.box is not None and frame.tracks else None
            claim = label.name if track_id is None else f"{label.name}{TRACK_MARK}{track_id}"
            best[claim] = max(best.get(claim, 0.0), label.confidence)
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

    def claim(self, frame: CloudFrame, labels: list[FoundLabel], now: float) -> list[str]:
        """Reserve the claim of every matching label or tracked object; returns the claims this frame may alert on."""
        claimed = []
        for claim in sorted(self.rules.claims(frame, labels)):
            if self._conditional_put(frame, claim, now):
                claimed.append(claim)
            else:
                logger.info("alert %s on %s suppressed: %s", claim, frame.camera_id,
                            "that object was alerted on" if TRACK_MARK in claim else "cooldown holds")
        return claimed

    def publish(self, frame: CloudFrame, labels: list[FoundLabel], claimed: list[str], s3_key: str, now: float) -> list[str]:
        """Publish the claimed alerts; returns those sent now. Releases the claim and raises when SNS fails."""
        best = self.rules.claims(frame, labels)
        sent = []
        for label in claimed:
            if not self._mark_publishing(frame, label, now):
                logger.info("alert %s on %s was already attempted for frame %s; not sent again",
                            label, frame.camera_id, frame.frame_id)
                continue
            try:
                self._publish(frame, claim_label(label), best.get(label, 0.0), s3_key)
            except Exception:
                self._release(frame, label)
                logger.warning("alert %s on %s not published; its cooldown claim is released", label, frame.camera_id)
                raise
            sent.append(label)
            logger.info("alert %s (%.0f%%) on %s published", label, best.get(label, 0.0), frame.camera_id)
        return sent

    def _publish(self, frame: CloudFrame, label: str, confidence: float, s3_key: str) -> None:
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

    def _cooldown_key(self, frame: CloudFrame, label: str) -> dict[str, Any]:
        return {"pk": {"S": f"{COOLDOWN_PREFIX}{frame.site}#{frame.camera_id}#{label.lower()}"}}

    def _hold_s(self, claim: str) -> float:
        return TRACK_CLAIM_S if TRACK_MARK in claim else self.rules.cooldown_s

    # A cooldown may be taken when there is none, it has expired, or it is this frame's unpublished reservation.
    _FREE = "attribute_not_exists(pk) OR until_ts <= :now OR (frame_id = :frame AND attribute_not_exists(publishing))"

    def _conditional_put(self, frame: CloudFrame, label: str, now: float) -> bool:
        until = now + self._hold_s(label)
        item = {
            **self._cooldown_key(frame, label), "kind": {"S": "cooldown"}, "camera": {"S": frame.camera_id},
            "label": {"S": label}, "frame_id": {"S": frame.frame_id}, "until_ts": to_dynamo(until),
            "expires_at": to_dynamo(int(until + 86400)),
        }
        return self._conditionally(lambda: self.dynamodb.put_item(
            TableName=self.table, Item=item, ConditionExpression=self._FREE,
            ExpressionAttributeValues={":now": to_dynamo(now), ":frame": {"S": frame.frame_id}},
        ))

    def _mark_publishing(self, frame: CloudFrame, label: str, now: float) -> bool:
        """Take the cooldown for the publish (creating it again if it was released); False when already taken."""
        until = now + self._hold_s(label)
        fields = {"publishing": ":yes", "frame_id": ":frame", "until_ts": ":until", "expires_at": ":expires",
                  "kind": ":kind", "camera": ":camera", "label": ":label"}
        return self._conditionally(lambda: self.dynamodb.update_item(
            TableName=self.table, Key=self._cooldown_key(frame, label),
            UpdateExpression="SET " + ", ".join(f"#{name} = {value}" for name, value in fields.items()),
            ConditionExpression=self._FREE.replace("frame_id", "#frame_id").replace("until_ts", "#until_ts"),
            ExpressionAttributeNames={f"#{name}": name for name in fields},
            ExpressionAttributeValues={
                ":yes": {"BOOL": True}, ":frame": {"S": frame.frame_id}, ":now": to_dynamo(now),
                ":until": to_dynamo(until), ":expires": to_dynamo(int(until + 86400)), ":kind": {"S": "cooldown"},
                ":camera": {"S": frame.camera_id}, ":label": {"S": label},
            },
        ))

    def _release(self, frame: CloudFrame, label: str) -> None:
        try:
            self._conditionally(lambda: self.dynamodb.delete_item(
                TableName=self.table, Key=self._cooldown_key(frame, label), ConditionExpression="frame_id = :frame",
                ExpressionAttributeValues={":frame": {"S": frame.frame_id}},
            ))
        except ClientError:
            # The claim then lapses with its cooldown; the SNS error that brought us here is the one to report.
            logger.exception("could not release the cooldown claim of %s on %s", label, frame.camera_id)

    @staticmethod
    def _conditionally(request: Any) -> bool:
        try:
            request()
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
