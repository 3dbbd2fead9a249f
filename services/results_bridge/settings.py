"""Results bridge settings (HYBRIDCAM_BRIDGE_*), on top of the common ones.

HYBRIDCAM_BRIDGE_QUEUE_URL (the stack's ResultsQueueUrl output) is required. AWS credentials,
region and endpoint come from the AWS SDK's own variables (AWS_REGION, AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import os
import socket

from pydantic import Field

from shared.settings import CommonSettings


class BridgeSettings(CommonSettings):
    bridge_queue_url: str = Field("", description="SQS queue of CloudResult messages (the stack's ResultsQueueUrl output)")
    bridge_region: str | None = Field(None, description="AWS region; empty = the AWS SDK's default")
    bridge_wait_time_s: int = Field(20, ge=0, le=20, description="SQS long-poll wait (ReceiveMessage WaitTimeSeconds)")
    bridge_max_messages: int = Field(10, ge=1, le=10, description="messages per ReceiveMessage call")
    bridge_visibility_timeout_s: int = Field(30, ge=0, le=43_200, description="a message not deleted within this comes back (0 = the queue's default)")
    bridge_dedup_ttl_s: int = Field(86_400, ge=60, description="how long a frame id is remembered to drop duplicate results")
    bridge_health_interval_s: float = Field(2.0, gt=0, description="how often counters go to the health stream")
    bridge_instance: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
