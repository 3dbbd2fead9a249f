"""Where frames and their labels are kept: the JPEG in S3, one DynamoDB item per frame.

S3 key: ``frames/camera/yyyy/mm/dd/hh/frame_id.jpg`` from the capture time in UTC (the edge identity may
read ``frames/`` and nothing else of the bucket but ``recordings/``).
Frame item (partition key ``pk`` = ``frame#<frame_id>``): frame_id, site, camera_id, seq, capture_ts and
capture_time (UTC ISO 8601), processed_ts/processed_time, width, height, backend, model, labels
(name, confidence 0-100, box x1 y1 x2 y2 in pixels when the label has one), s3_key, expires_at (TTL),
and the progress flags alerts_claimed/result_sent/alerts_done that make a retried record skip finished
side effects. The handler looks the item up before anything else, so a retry never pays for detection
or the S3 put again.
The table's GSI ``camera-latest`` (camera_id, capture_ts) answers "latest frames of a camera".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from detector_lambda.detectors import FoundLabel, FrameImage
from detector_lambda.records import JPEG_MAGIC, RecordError
from shared.schemas import CloudFrame, utc_iso

FRAME_PREFIX = "frame#"
FRAMES_KEY_PREFIX = "frames/"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def frame_s3_key(camera_id: str, frame_id: str, capture_ts: float) -> str:
    when = datetime.fromtimestamp(capture_ts, tz=UTC)
    return f"{FRAMES_KEY_PREFIX}{camera_id}/{when:%Y/%m/%d/%H}/{frame_id}.jpg"


def to_dynamo(value: Any) -> Any:
    """Python value -> DynamoDB attribute value (floats become Decimal, as DynamoDB requires)."""
    def plain(item: Any) -> Any:
        if isinstance(item, float):
            return Decimal(repr(round(item, 6)))
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [plain(v) for v in item]
        return item
    return _serializer.serialize(plain(value))


def from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value
    return {key: plain(_deserializer.deserialize(raw)) for key, raw in item.items()}


class FrameStore:
    """The frames bucket: fetches claim-checked images and stores every frame under its canonical key."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def fetch_image(self, frame: CloudFrame, needs_bytes: bool) -> FrameImage:
        if frame.jpeg is not None:
            return FrameImage(frame.width, frame.height, jpeg=frame.jpeg)
        bucket, key = str(frame.s3_bucket), str(frame.s3_key)
        try:
            if needs_bytes:
                jpeg = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                head = jpeg[:3]
            else:
                jpeg = None
                head = self.s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-2")["Body"].read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                raise RecordError(f"claim-checked image s3://{bucket}/{key} does not exist") from None
            raise
        if not head.startswith(JPEG_MAGIC):
            raise RecordError(f"claim-checked object s3://{bucket}/{key} is not a JPEG")
        return FrameImage(frame.width, frame.height, jpeg=jpeg, s3_bucket=bucket, s3_key=key)

    def store_frame(self, frame: CloudFrame, image: FrameImage) -> str:
        """Put the frame at its canonical key (idempotent: same key, same bytes) and return the key."""
        key = frame_s3_key(frame.camera_id, frame.frame_id, frame.capture_ts)
        metadata = {"frame-id": frame.frame_id, "camera-id": frame.camera_id, "capture-time": utc_iso(frame.capture_ts)}
        if image.jpeg is not None and image.s3_key is None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=image.jpeg, ContentType="image/jpeg", Metadata=metadata)
        elif (image.s3_bucket, image.s3_key) != (self.bucket, key):
            self.s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": image.s3_bucket, "Key": image.s3_key},
                                ContentType="image/jpeg", Metadata=metadata, MetadataDirective="REPLACE")
        return key


@dataclass
class FrameItem:
    """The stored item of one frame, as the handler needs it back on a retry."""

    frame_id: str
    labels: list[FoundLabel]
    s3_key: str
    model: str
    processed_ts: float
    alerts: list[str] = field(default_factory=list)
    alerts_claimed: bool = False
    alerts_done: bool = False
    result_sent: bool = False
    faces_done: bool = False
    created: bool = True


def labels_to_item(labels: list[FoundLabel]) -> list[dict[str, Any]]:
    return [
        {"name": label.name, "confidence": label.confidence, **({"box": list(label.box)} if label.box else {})}
        for label in labels
    ]


def labels_from_item(values: list[dict[str, Any]]) -> list[FoundLabel]:
    return [FoundLabel(str(v["name"]), float(v["confidence"]), _box(v["box"]) if "box" in v else None) for v in values]


def _box(values: list[Any]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(x) for x in values)
    return (x1, y1, x2, y2)


class FrameTable:
    def __init__(self, dynamodb: Any, table: str, ttl_days: int) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.ttl_days = ttl_days

    def put_frame(self, frame: CloudFrame, labels: list[FoundLabel], s3_key: str, backend: str, model: str,
                  processed_ts: float) -> FrameItem:
        """Write the frame's item unless it exists; on a retry return what the first attempt stored."""
        item = {
            "pk": FRAME_PREFIX + frame.frame_id, "kind": "frame", "frame_id": frame.frame_id, "site": frame.site,
            "camera_id": frame.camera_id, "seq": frame.seq, "capture_ts": frame.capture_ts,
            "capture_time": utc_iso(frame.capture_ts), "processed_ts": processed_ts,
            "processed_time": utc_iso(processed_ts), "width": frame.width, "height": frame.height,
            "backend": backend, "model": model, "labels": labels_to_item(labels), "s3_key": s3_key,
            "expires_at": int(processed_ts + self.ttl_days * 86400), "alerts": [], "alerts_claimed": False,
            "alerts_done": False, "result_sent": False,
        }
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item={k: to_dynamo(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return FrameItem(frame.frame_id, labels, s3_key, model, processed_ts)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return self.get_frame(frame.frame_id)

    def get_frame(self, frame_id: str) -> FrameItem:
        found = self.find_frame(frame_id)
        if found is None:
            raise KeyError(f"frame {frame_id} has no item in {self.table}")
        return found

    def find_frame(self, frame_id: str) -> FrameItem | None:
        """The frame's stored item (strongly consistent read), or None when it was never stored."""
        response = self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": FRAME_PREFIX + frame_id}},
                                          ConsistentRead=True)
        if "Item" not in response:
            return None
        item = from_dynamo(response["Item"])
        return FrameItem(
            frame_id=frame_id, labels=labels_from_item(item.get("labels", [])), s3_key=str(item.get("s3_key", "")),
            model=str(item.get("model", "")), processed_ts=float(item.get("processed_ts", 0.0)),
            alerts=list(item.get("alerts", [])), alerts_claimed=bool(item.get("alerts_claimed")),
            alerts_done=bool(item.get("alerts_done")), result_sent=bool(item.get("result_sent")),
            faces_done=bool(item.get("faces_done")), created=False,
        )

    def mark(self, frame_id: str, **flags: Any) -> None:
        names = {f"#{k}": k for k in flags}
        values = {f":{k}": to_dynamo(v) for k, v in flags.items()}
        self.dynamodb.update_item(
            TableName=self.table, Key={"pk": {"S": FRAME_PREFIX + frame_id}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in flags),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )
