"""Records that can never succeed go, with their payload, to the stack's dead-letter queue (SQS).

The message body is JSON: reason, sequenceNumber, partitionKey, shardId, eventSourceARN,
approximateArrivalTimestamp and ``data`` (the record's payload, base64, exactly as Kinesis carried it).
A payload too large for an SQS message (256 KiB) is put in the frames bucket under ``dead-letters/``
and the message names it in ``s3Bucket``/``s3Key`` instead of ``data``. Once the message is sent the
record is acknowledged, so it no longer blocks its shard; a failure to send is raised (the record is
retried). The event source re-delivers records after a failed one, so each dead letter is also noted
in the frames table (``dead-letter#<eventID>``, with a TTL) and a record already noted is not sent again.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

SQS_BODY_LIMIT = 240 * 1024  # under SQS's 256 KiB, leaving room for the other fields
DEAD_LETTER_PREFIX = "dead-letters"


MARK_PREFIX = "dead-letter#"
MARK_TTL_S = 8 * 86400  # longer than the stream's retention: a re-delivery always finds its mark


class DeadLetters:
    def __init__(self, sqs: Any, queue_url: str, s3: Any, bucket: str, dynamodb: Any = None, table: str = "") -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.s3 = s3
        self.bucket = bucket
        self.dynamodb = dynamodb
        self.table = table

    @property
    def enabled(self) -> bool:
        return bool(self.queue_url)

    def send(self, record: dict[str, Any], reason: str) -> dict[str, Any] | None:
        """Write the record to the queue; returns the message body, or None when it was sent before."""
        mark = self._mark_key(record)
        if mark and self.dynamodb is not None and "Item" in self.dynamodb.get_item(
                TableName=self.table, Key=mark, ConsistentRead=True):
            return None
        body = self._write(record, reason)
        if mark and self.dynamodb is not None:
            self.dynamodb.put_item(TableName=self.table, Item={
                **mark, "kind": {"S": "dead-letter"}, "expires_at": {"N": str(int(time.time()) + MARK_TTL_S)}})
        return body

    @staticmethod
    def _mark_key(record: dict[str, Any]) -> dict[str, Any] | None:
        event_id = record.get("eventID") if isinstance(record, dict) else None
        return {"pk": {"S": f"{MARK_PREFIX}{event_id}"}} if event_id else None

    def _write(self, record: dict[str, Any], reason: str) -> dict[str, Any]:
        kinesis = record.get("kinesis") if isinstance(record, dict) else None
        kinesis = kinesis if isinstance(kinesis, dict) else {}
        sequence_number = str(kinesis.get("sequenceNumber", ""))
        shard_id = str(record.get("eventID", "")).partition(":")[0] if isinstance(record, dict) else ""
        body: dict[str, Any] = {
            "reason": reason, "sequenceNumber": sequence_number, "partitionKey": kinesis.get("partitionKey", ""),
            "shardId": shard_id, "eventSourceARN": record.get("eventSourceARN", "") if isinstance(record, dict) else "",
            "approximateArrivalTimestamp": kinesis.get("approximateArrivalTimestamp"), "deadLetteredAt": time.time(),
        }
        data = kinesis.get("data", "")
        text = data if isinstance(data, str) else json.dumps(data, default=str)
        if len(text) <= SQS_BODY_LIMIT:
            body["data"] = text
        else:
            key = f"{DEAD_LETTER_PREFIX}/{shard_id or 'unknown-shard'}/{sequence_number or int(time.time() * 1000)}.b64"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode("ascii", "replace"),
                               ContentType="text/plain")
            body.update(s3Bucket=self.bucket, s3Key=key)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))
        return body


def payload_of(body: dict[str, Any], s3: Any = None) -> bytes:
    """The record's original payload from a dead-letter message body (reading S3 when it went there)."""
    if "data" in body:
        return base64.b64decode(body["data"])
    text = s3.get_object(Bucket=body["s3Bucket"], Key=body["s3Key"])["Body"].read()
    return base64.b64decode(text)
