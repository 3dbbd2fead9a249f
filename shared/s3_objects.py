"""What the edge and the cloud tooling both ask of S3 about an object before uploading it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

MISSING_CODES = ("404", "NoSuchKey", "NotFound")


def object_size(s3: Any, bucket: str, key: str) -> int | None:
    """The object's size in bytes, or None when there is no such object (other errors are raised)."""
    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in MISSING_CODES:
            return None
        raise
