"""The latest cloud-analysed frames: items from DynamoDB, pictures from S3 through presigned URLs.

The table's ``camera-latest`` index is keyed by camera and capture time (UTC epoch
seconds), so "the latest frames" is one query per camera, newest first, bounded by a time
window: no date arithmetic, no per-day or per-month partitions, so month and year
boundaries and the viewer's time zone cannot hide frames. Each frame's S3 key is read from
its item, never rebuilt from a date. Times go to the page as UTC ISO 8601 and the browser
shows them in its own zone.

A wrong table, bucket or credential is reported as one sentence in the panel (and the
log); it never blanks the rest of the page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from shared.schemas import utc_iso

log = logging.getLogger(__name__)
INDEX_NAME = "camera-latest"
PRESIGN_EXPIRY_S = 900
_deserializer = TypeDeserializer()


class CloudFramesError(RuntimeError):
    """The cloud frames cannot be read; the message says which resource and why."""


@dataclass(frozen=True)
class CloudFrameView:
    frame_id: str
    camera_id: str
    capture_ts: float
    capture_time: str
    processed_time: str
    backend: str
    model: str
    labels: list[dict[str, Any]]
    s3_key: str
    image_url: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def item_to_view(raw_item: dict[str, Any], image_url: str) -> CloudFrameView:
    item = _plain({k: _deserializer.deserialize(v) for k, v in raw_item.items()})
    capture_ts = float(item["capture_ts"])
    labels = [{"name": str(label.get("name", "")), "confidence": round(float(label.get("confidence", 0.0)), 1),
               "box": label.get("box")} for label in item.get("labels", [])]
    labels.sort(key=lambda label: -label["confidence"])
    processed_ts = item.get("processed_ts")
    return CloudFrameView(
        frame_id=str(item["frame_id"]), camera_id=str(item["camera_id"]), capture_ts=capture_ts,
        capture_time=utc_iso(capture_ts), processed_time=utc_iso(float(processed_ts)) if processed_ts else "",
        backend=str(item.get("backend", "")), model=str(item.get("model", "")), labels=labels,
        s3_key=str(item.get("s3_key", "")), image_url=image_url,
    )


class CloudFrameBrowser:
    def __init__(self, dynamodb: Any, s3: Any, table: str, bucket: str) -> None:
        self.dynamodb = dynamodb
        self.s3 = s3
        self.table = table
        self.bucket = bucket

    def latest(self, camera_ids: list[str], limit: int = 12, window_s: float = 86_400.0,
               now: float | None = None) -> list[CloudFrameView]:
        since = (time.time() if now is None else now) - window_s
        items: list[dict[str, Any]] = []
        for camera_id in camera_ids:
            items.extend(self._query_camera(camera_id, since, limit))
        items.sort(key=lambda item: float(item["capture_ts"]["N"]), reverse=True)
        return [item_to_view(item, self._presign(item.get("s3_key", {}).get("S", ""))) for item in items[:limit]]

    def _query_camera(self, camera_id: str, since: float, limit: int) -> list[dict[str, Any]]:
        try:
            reply = self.dynamodb.query(
                TableName=self.table, IndexName=INDEX_NAME,
                KeyConditionExpression="camera_id = :camera AND capture_ts >= :since",
                ExpressionAttributeValues={":camera": {"S": camera_id}, ":since": {"N": repr(round(since, 3))}},
                ScanIndexForward=False, Limit=limit,
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise CloudFramesError(f"DynamoDB table {self.table!r} (or its index {INDEX_NAME}) does not exist: "
                                       "check HYBRIDCAM_DASHBOARD_FRAMES_TABLE against the stack output FramesTableName") from None
            raise CloudFramesError(f"DynamoDB query of {self.table!r} failed: {code or error}") from None
        except BotoCoreError as error:
            raise CloudFramesError(f"DynamoDB is unreachable: {error}") from None
        return list(reply.get("Items", []))

    def _presign(self, key: str) -> str:
        if not key:
            return ""
        return str(self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=PRESIGN_EXPIRY_S))

    def check(self) -> None:
        """Raise CloudFramesError naming the first configured resource that is not there."""
        _probe(f"DynamoDB table {self.table!r}", lambda: self.dynamodb.describe_table(TableName=self.table))
        _probe(f"S3 bucket {self.bucket!r}", lambda: self.s3.head_bucket(Bucket=self.bucket))


def _probe(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except ClientError as error:
        raise CloudFramesError(f"{what}: {error.response.get('Error', {}).get('Code', error)}") from None
    except BotoCoreError as error:
        raise CloudFramesError(f"{what} is unreachable: {error}") from None


def cloud_frame_browser(table: str, bucket: str, region: str | None) -> CloudFrameBrowser:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2},
                    signature_version="s3v4")
    return CloudFrameBrowser(boto3.client("dynamodb", region_name=region, config=config),
                             boto3.client("s3", region_name=region, config=config), table, bucket)
