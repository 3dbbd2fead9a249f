"""Kinesis event records -> CloudFrame messages (msgpack via shared.schemas; never pickle).

A record that cannot become a CloudFrame raises RecordError with one sentence saying why; the
handler logs it, writes it with its payload to the stack's dead-letter queue and acknowledges it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from shared.schemas import CloudFrame, SchemaError, decode_as

JPEG_MAGIC = b"\xff\xd8\xff"


class RecordError(ValueError):
    """A record that will never succeed however often it is retried (bad bytes, schema, image)."""


@dataclass(frozen=True)
class FrameRecord:
    sequence_number: str
    partition_key: str
    frame: CloudFrame


def sequence_number_of(record: Any) -> str:
    """The record's sequence number (its batchItemFailures identifier), or "" if the record has none."""
    try:
        return str(record["kinesis"]["sequenceNumber"])
    except (KeyError, TypeError):
        return ""


def decode_record(record: Any) -> FrameRecord:
    try:
        kinesis = record["kinesis"]
        sequence_number = str(kinesis["sequenceNumber"])
        data = kinesis["data"]
    except (KeyError, TypeError):
        raise RecordError("event record has no kinesis.sequenceNumber/kinesis.data") from None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RecordError("kinesis.data is not base64") from None
    try:
        frame = decode_as(raw, CloudFrame)
    except SchemaError as error:
        raise RecordError(str(error)) from None
    if frame.jpeg is None and not (frame.s3_bucket and frame.s3_key):
        raise RecordError("cloud_frame carries neither jpeg bytes nor an s3_bucket/s3_key claim check")
    if frame.jpeg is not None and not frame.jpeg.startswith(JPEG_MAGIC):
        raise RecordError("cloud_frame jpeg field does not hold JPEG bytes")
    return FrameRecord(sequence_number, str(kinesis.get("partitionKey", "")), frame)
