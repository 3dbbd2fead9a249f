"""Frames the events service wants the cloud to confirm (a rule with ``cloud_confirm``): sent at once, outside
the sampling policy and its budget, counted as their own reason (``sent_rule_confirm``)."""

from __future__ import annotations

from services.sampler.kinesis_sender import OutgoingRecord, partition_key
from shared.schemas import CloudConfirmRequest, CloudFrame
from shared.stream_bus import CLOUD_REQUESTS_STREAM, StreamBus


def confirmation_records(bus: StreamBus, group: str, consumer: str, site: str) -> tuple[list[OutgoingRecord], list[str]]:
    """The waiting requests as Kinesis records, and every entry id read (to acknowledge once they are sent or spooled)."""
    entries = bus.read_group([CLOUD_REQUESTS_STREAM], group, consumer, count=20, block_ms=1, start_id="0")
    records = []
    for entry in entries:
        request = entry.message
        if not isinstance(request, CloudConfirmRequest):
            continue
        frame = CloudFrame(site=site, frame_id=request.frame_id, camera_id=request.camera_id, seq=request.seq,
                           capture_ts=request.capture_ts, width=request.width, height=request.height, jpeg=request.jpeg)
        records.append(OutgoingRecord(partition_key(site, request.camera_id), frame.encode(), token=(CLOUD_REQUESTS_STREAM, entry.entry_id)))
    return records, [entry.entry_id for entry in entries]
