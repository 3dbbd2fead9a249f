"""SMS and email for events, through the stack's SNS alert topic: rule, camera, zone, time and a link to the event.

One notification per event at most (the event store records it before sending); a cooldown per
rule and track keeps the same person stepping in and out of a zone from notifying again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

MAX_REMEMBERED = 10_000  # (rule, track) pairs whose last notification is remembered


@dataclass(frozen=True)
class Notice:
    event_id: str
    rule: str
    severity: str
    camera_id: str
    camera_name: str
    zone: str
    start_ts: float
    labels: list[str]
    track_ids: tuple[int, ...]


class Notifier:
    """Decides whether an event may notify (cooldown per rule and track) and sends it through SNS."""

    def __init__(self, topic_arn: str, link_base: str, sns: Any = None,
                 link_for: Callable[[str], str] | None = None) -> None:
        """``link_for``: the link text for an event id when it is not the dashboard's event page (presigned URLs)."""
        self.topic_arn = topic_arn
        self.link_base = link_base.rstrip("/")
        self.link_for = link_for
        self._sns = sns
        self._last: OrderedDict[tuple[str, int], float] = OrderedDict()

    def allowed(self, rule: str, track_ids: tuple[int, ...], cooldown_s: float, ts: float) -> bool:
        """False when every track of the event already notified for this rule within the cooldown."""
        fresh = [t for t in track_ids if ts - self._last.get((rule, t), float("-inf")) >= cooldown_s]
        if not fresh and track_ids:
            return False
        for track in track_ids:
            self._last[(rule, track)] = ts
            self._last.move_to_end((rule, track))
        while len(self._last) > MAX_REMEMBERED:
            self._last.popitem(last=False)
        return True

    def link(self, event_id: str) -> str:
        if self.link_for is not None:
            return self.link_for(event_id)
        return f"{self.link_base}/events/{event_id}"

    def text(self, notice: Notice, zone_info: ZoneInfo) -> str:
        local = dt.datetime.fromtimestamp(notice.start_ts, tz=zone_info).strftime("%Y-%m-%d %H:%M:%S %Z")
        labels = ", ".join(notice.labels)
        return (f"[{notice.severity}] {notice.rule}: {labels} in {notice.zone} on {notice.camera_name} "
                f"at {local} - {self.link(notice.event_id)}")

    def send(self, notice: Notice, text: str) -> None:
        sns = self._client()
        link = text.rsplit(" - ", 1)[-1]
        short = text if len(text) <= 160 else f"{notice.rule} on {notice.camera_name}: {link}"
        sns.publish(TopicArn=self.topic_arn, Subject=f"hybridcam: {notice.rule} on {notice.camera_name}"[:99],
                    MessageStructure="json",
                    Message=json.dumps({"default": text, "email": text, "sms": short}),
                    MessageAttributes={"event_id": {"DataType": "String", "StringValue": notice.event_id}})

    def _client(self) -> Any:
        if self._sns is None:
            import boto3

            self._sns = boto3.client("sns")
        return self._sns
