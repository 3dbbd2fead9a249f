"""Kinesis event records -> CloudFrame or Heartbeat messages (msgpack via shared.schemas; never pickle).

A record that cannot become a CloudFrame raises RecordError with one sentence saying why; the
handler logs it, writes it with its payload to the stack's dead-letter queue and acknowledges it.
A record that says it is a heartbeat but is malformed raises HeartbeatError: the handler counts and
drops it (a lost heartbeat only makes the server look stale until the next one).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import msgpack

from shared.schemas import CloudFrame, Heartbeat, SchemaError, decode, decode_as

JPEG_MAGIC = b"\xff\xd8\xff"


class RecordError(ValueError):
    """A record that will never succeed however often it is retried (bad bytes, schema, image)."""


class HeartbeatError(RecordError):
    """A heartbeat record that cannot be read: counted and dropped, never dead-lettered."""


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


@dataclass(frozen=True)
class HeartbeatRecord:
    sequence_number: str
    heartbeat: Heartbeat


def decode_record(record: Any) -> FrameRecord:
    sequence_number, partition_key, raw = _payload_of(record)
    try:
        frame = decode_as(raw, CloudFrame)
    except SchemaError as error:
        raise RecordError(str(error)) from None
    return _checked(FrameRecord(sequence_number, partition_key, frame))


def decode_any(record: Any) -> FrameRecord | HeartbeatRecord:
    """A frame or a heartbeat; RecordError (HeartbeatError for a heartbeat) when the record is neither."""
    sequence_number, partition_key, raw = _payload_of(record)
    try:
        message = decode(raw)
    except SchemaError as error:
        if _schema_name(raw) == Heartbeat.schema_name:
            raise HeartbeatError(str(error)) from None
        raise RecordError(str(error)) from None
    if isinstance(message, Heartbeat):
        return HeartbeatRecord(sequence_number, message)
    if not isinstance(message, CloudFrame):
        raise RecordError(f"expected cloud_frame or heartbeat, got {type(message).schema_name}")
    return _checked(FrameRecord(sequence_number, partition_key, message))


def _schema_name(raw: bytes) -> str | None:
    """The ``schema`` a payload claims, when it is a msgpack map that names one (only read on the error path)."""
    try:
        body = msgpack.unpackb(raw, raw=False)
    except Exception:  # msgpack raises several unrelated types for garbage
        return None
    name = body.get("schema") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _payload_of(record: Any) -> tuple[str, str, bytes]:
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
    return sequence_number, str(kinesis.get("partitionKey", "")), raw


def _checked(record: FrameRecord) -> FrameRecord:
    frame = record.frame
    if frame.jpeg is None and not (frame.s3_bucket and frame.s3_key):
        raise RecordError("cloud_frame carries neither jpeg bytes nor an s3_bucket/s3_key claim check")
    if frame.jpeg is not None and not frame.jpeg.startswith(JPEG_MAGIC):
        raise RecordError("cloud_frame jpeg field does not hold JPEG bytes")
    return record
