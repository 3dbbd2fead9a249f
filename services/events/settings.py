"""Events service settings (HYBRIDCAM_EVENTS_*), on top of the common ones.

Zones, rules, pre/post-roll and retention are per site, in the site file's ``events`` section
(shared/event_rules.py); these say where events are kept and how notifications go out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings import CommonSettings


class EventsSettings(CommonSettings):
    events_dir: Path = Field(Path("runs/events"), description="folder of the events database and its clips and snapshots")
    events_alert_topic_arn: str = Field("", description="SNS topic for SMS/email (the stack's AlertTopicArn); empty = no notifications")
    events_link_base: str = Field("http://127.0.0.1:8088", description="dashboard address that notification links open "
                                  "(<base>/events/<id>); one reachable from the operators' phones")
    events_link: Literal["dashboard", "presigned"] = Field(
        "dashboard", description="what notification links open: the dashboard's event page, or short-lived presigned "
                                 "URLs of the snapshot and clip in the stack's bucket (needs _UPLOAD_BUCKET/_TABLE)")
    events_link_expiry_s: int = Field(86_400, ge=60, le=604_800, description="how long presigned links work")
    events_clips: bool = Field(True, description="record clips from each file/RTSP camera's own stream (a second connection)")
    events_upload_bucket: str = Field("", description="S3 bucket for event clips and snapshots (the stack's FramesBucketName); "
                                      "empty = events stay on the edge")
    events_upload_table: str = Field("", description="DynamoDB table for event items (the stack's FramesTableName)")
    events_encode_synthetic: bool = Field(True, description="clips for synthetic cameras: their frames encoded once (H.264) "
                                          "into the rolling buffer")
    events_encode_width: int = Field(640, ge=64, le=3840, description="widest clip encoded for a camera without its own stream")
    events_retention_interval_s: float = Field(300.0, gt=0, description="how often retention by age and disk budget runs")
    events_health_interval_s: float = Field(2.0, gt=0, description="how often counters go to the health stream")
