"""The detector Lambda's configuration, read from environment variables once per cold start.

Required: FRAMES_BUCKET, FRAMES_TABLE, ALERT_TOPIC_ARN, RESULTS_QUEUE_URL.
Optional: DETECTOR_BACKEND (rekognition|sagemaker, default rekognition), SAGEMAKER_ENDPOINT (required
for sagemaker), WATCH_LABELS (comma list, default "Person"), MIN_CONFIDENCE (0-100, default 60),
ALERT_MIN_CONFIDENCE (0-100, default MIN_CONFIDENCE), ALERT_COOLDOWN_S (default 300), MAX_LABELS
(default 20), ITEM_TTL_DAYS (default 30), SITE (default "site", only used for logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigError

BACKENDS = ("rekognition", "sagemaker")
REQUIRED = ("FRAMES_BUCKET", "FRAMES_TABLE", "ALERT_TOPIC_ARN", "RESULTS_QUEUE_URL")


@dataclass(frozen=True)
class LambdaConfig:
    frames_bucket: str
    frames_table: str
    alert_topic_arn: str
    results_queue_url: str
    detector_backend: str = "rekognition"
    sagemaker_endpoint: str = ""
    watch_labels: frozenset[str] = frozenset({"person"})
    min_confidence: float = 60.0
    alert_min_confidence: float = 60.0
    alert_cooldown_s: float = 300.0
    max_labels: int = 20
    item_ttl_days: int = 30

    def describe(self) -> str:
        target = self.sagemaker_endpoint if self.detector_backend == "sagemaker" else "DetectLabels"
        return (
            f"detector {self.detector_backend} ({target}), frames to s3://{self.frames_bucket} and table "
            f"{self.frames_table}, alerts on {sorted(self.watch_labels)} >= {self.alert_min_confidence:g}% "
            f"(cooldown {self.alert_cooldown_s:g} s), results to {self.results_queue_url}"
        )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
    return value


def load_config(env: Mapping[str, str] | None = None) -> LambdaConfig:
    """Build the configuration; raises ConfigError naming the first missing or invalid variable."""
    env = os.environ if env is None else env
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(
            f"environment variable {missing[0]} is not set (the detector Lambda needs {', '.join(REQUIRED)})."
        )
    backend = env.get("DETECTOR_BACKEND", "rekognition").strip().lower() or "rekognition"
    if backend not in BACKENDS:
        raise ConfigError(f"DETECTOR_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    endpoint = env.get("SAGEMAKER_ENDPOINT", "").strip()
    if backend == "sagemaker" and not endpoint:
        raise ConfigError("SAGEMAKER_ENDPOINT is not set but DETECTOR_BACKEND is sagemaker.")
    min_confidence = _number(env, "MIN_CONFIDENCE", 60.0, 0.0, 100.0)
    watch = env.get("WATCH_LABELS", "Person")
    return LambdaConfig(
        frames_bucket=env["FRAMES_BUCKET"].strip(),
        frames_table=env["FRAMES_TABLE"].strip(),
        alert_topic_arn=env["ALERT_TOPIC_ARN"].strip(),
        results_queue_url=env["RESULTS_QUEUE_URL"].strip(),
        detector_backend=backend,
        sagemaker_endpoint=endpoint,
        watch_labels=frozenset(label.strip().lower() for label in watch.split(",") if label.strip()),
        min_confidence=min_confidence,
        alert_min_confidence=_number(env, "ALERT_MIN_CONFIDENCE", min_confidence, 0.0, 100.0),
        alert_cooldown_s=_number(env, "ALERT_COOLDOWN_S", 300.0, 0.0, 86400.0 * 7),
        max_labels=int(_number(env, "MAX_LABELS", 20, 1, 1000)),
        item_ttl_days=int(_number(env, "ITEM_TTL_DAYS", 30, 1, 3650)),
    )
