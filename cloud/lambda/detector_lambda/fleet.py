"""Edge heartbeats in the fleet table: one item per server, the newest heartbeat it sent.

Item: ``kind`` = ``heartbeat`` (partition key), ``sk`` = ``<site>#<server>`` (sort key), site, server,
sent_ts/sent_time, received_ts, interval_s, cameras, services, expires_at (TTL). One partition holds the
whole fleet, so the console lists every server with one Query (a fleet of a thousand servers sending every
30 s writes about 33 items a second, well within one partition's capacity). The fleet table is its own
table, so no heartbeat ever reaches the frames table or its indexes.

A heartbeat is written only when it is newer than the stored one (a conditional put), so a heartbeat that
waited in a spool or was re-delivered never hides a newer one.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from detector_lambda.storage import to_dynamo
from shared.schemas import Heartbeat, utc_iso

HEARTBEAT_KIND = "heartbeat"
HEARTBEAT_TTL_DAYS = 30


def heartbeat_sort_key(site: str, server: str) -> str:
    return f"{site}#{server}"


def heartbeat_item(heartbeat: Heartbeat, received_ts: float, ttl_days: int = HEARTBEAT_TTL_DAYS) -> dict[str, Any]:
    """The fleet-table item of one heartbeat (plain Python values)."""
    return {
        "kind": HEARTBEAT_KIND, "sk": heartbeat_sort_key(heartbeat.site, heartbeat.server),
        "site": heartbeat.site, "server": heartbeat.server,
        "sent_ts": heartbeat.sent_ts, "sent_time": utc_iso(heartbeat.sent_ts),
        "received_ts": received_ts, "interval_s": heartbeat.interval_s,
        "cameras": [camera.model_dump() for camera in heartbeat.cameras],
        "services": [service.model_dump() for service in heartbeat.services],
        "expires_at": int(received_ts + ttl_days * 86400),
    }


class FleetTable:
    """Writes heartbeats to the fleet table."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    def put_heartbeat(self, heartbeat: Heartbeat, received_ts: float) -> bool:
        """Store the heartbeat; False when the table already holds a newer (or the same) one of that server."""
        item = heartbeat_item(heartbeat, received_ts)
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item={key: to_dynamo(value) for key, value in item.items()},
                ConditionExpression="attribute_not_exists(sk) OR sent_ts < :sent",
                ExpressionAttributeValues={":sent": to_dynamo(heartbeat.sent_ts)},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
