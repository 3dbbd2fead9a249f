"""Redis keys the bridge maintains for others to read."""

from __future__ import annotations

CLOUD_RESULT_COUNTERS_KEY = "cloud:result_counters"  # hash: results, alerts (the sampler's run counters read alerts)
DEDUP_KEY_PREFIX = "cloud:seen:"  # one key per frame id, with a TTL


def dedup_key(frame_id: str) -> str:
    return f"{DEDUP_KEY_PREFIX}{frame_id}"
