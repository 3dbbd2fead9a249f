"""Finished events to the stack when the cloud is enabled: clip and snapshot to S3 (``events/`` prefix, expired by
the bucket's lifecycle rule), one DynamoDB item per event (``pk = event#<id>``, expired by the table's TTL).

The store remembers what was uploaded (``uploaded_ts``), so an event finished while the cloud was away is
sent on a later sweep; a failed sweep is logged, counted and retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.event_store import EventStore

log = logging.getLogger(__name__)


@dataclass
class UploadCounters:
    events: int = 0
    files: int = 0
    bytes: int = 0
    failures: int = 0


class EventUploader:
    def __init__(self, store: EventStore, site: str, bucket: str, table: str, retention_days: float,
                 s3: Any = None, dynamodb: Any = None, link_expiry_s: int = 86_400) -> None:
        self.store = store
        self.link_expiry_s = link_expiry_s
        self.site = site
        self.bucket = bucket
        self.table = table
        self.retention_days = retention_days
        self._s3 = s3
        self._dynamodb = dynamodb
        self.counters = UploadCounters()

    def key(self, event: dict, kind: str) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(event["start_ts"]))
        suffix = ".mp4" if kind == "clip" else ".jpg"
        return f"events/{self.site}/{event['camera']}/{day}/{event['id']}{suffix}"

    def sweep(self, settled_before: float, limit: int = 20) -> int:
        """Upload events closed before ``settled_before`` (their clips are finished) that are not uploaded yet."""
        done = 0
        for event in self.store.pending_uploads(settled_before, limit):
            try:
                self.upload(event)
            except Exception as error:  # noqa: BLE001 (the cloud away: retried on the next sweep)
                self.counters.failures += 1
                log.warning("event %s not uploaded (retried later): %s", event["id"], error)
                break
            done += 1
        return done

    def upload(self, event: dict) -> None:
        keys = {}
        for kind in ("clip", "snapshot"):
            if event.get(kind):
                path = self.store.media / event[kind]
                if not path.exists():
                    continue
                keys[f"{kind}_key"] = self.key(event, kind)
                self._s3_client().put_object(Bucket=self.bucket, Key=keys[f"{kind}_key"], Body=path.read_bytes(),
                                             ContentType="video/mp4" if kind == "clip" else "image/jpeg")
                self.counters.files += 1
                self.counters.bytes += path.stat().st_size
        item = {
            "pk": f"event#{event['id']}", "kind": "event", "site": self.site, "camera_id": event["camera"],
            # start_ts, not capture_ts: an event item must stay out of the camera-latest index (the cloud-frames panel)
            "start_ts": Decimal(str(round(event["start_ts"], 3))), "end_ts": Decimal(str(round(event["end_ts"] or event["start_ts"], 3))),
            "rule": event["rule"], "zone": event["zone"], "severity": event["severity"], "labels": event["labels"],
            "track_ids": [Decimal(t) for t in event["track_ids"]], "cloud_labels": event["cloud_labels"],
            "expires_at": Decimal(int(event["start_ts"] + self.retention_days * 86_400)), **keys,
        }
        self._dynamodb_client().put_item(Item=item)
        self.store.update_event(event["id"], uploaded_ts=time.time())
        self.counters.events += 1

    def presigned_link(self, event_id: str) -> str:
        """Short-lived links to the event's snapshot (uploaded now) and clip (uploaded once the event is over:
        the link works from then on), for notifications when the dashboard is not reachable from outside."""
        event = self.store.event(event_id)
        if event is None:
            raise KeyError(event_id)
        s3 = self._s3_client()
        parts = []
        if event.get("snapshot") and (self.store.media / event["snapshot"]).exists():
            key = self.key(event, "snapshot")
            s3.put_object(Bucket=self.bucket, Key=key, Body=(self.store.media / event["snapshot"]).read_bytes(),
                          ContentType="image/jpeg")
            parts.append("snapshot " + s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                                 ExpiresIn=self.link_expiry_s))
        clip = s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self.key(event, "clip")},
                                         ExpiresIn=self.link_expiry_s)
        parts.append(f"clip {clip}")
        return " ".join(parts)

    def _s3_client(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def _dynamodb_client(self) -> Any:
        if self._dynamodb is None:
            import boto3

            self._dynamodb = boto3.resource("dynamodb").Table(self.table)
        return self._dynamodb
