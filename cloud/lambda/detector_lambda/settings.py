"""The detector Lambda's settings: one pydantic-settings model read from the function's environment.

The variable names are the ones the CloudFormation template sets (no prefix: the function's
environment holds nothing else of ours). Required: FRAMES_BUCKET, FRAMES_TABLE, ALERT_TOPIC_ARN,
RESULTS_QUEUE_URL. Optional: FAILED_RECORDS_QUEUE_URL (the stack's dead-letter queue for records that
can never succeed; without it they are reported as failures and left to the event source),
DETECTOR_BACKEND (rekognition|sagemaker), SAGEMAKER_ENDPOINT (required for sagemaker), WATCH_LABELS
(comma list, default "Person"), MIN_CONFIDENCE (0-100, default 60), ALERT_MIN_CONFIDENCE (default
MIN_CONFIDENCE), ALERT_COOLDOWN_S (default 300), MAX_LABELS (default 20), ITEM_TTL_DAYS (default 30),
RECORD_RESERVE_S (stop taking records when less of the invocation remains, default 20).
Thin uplink (super_resolution.py): SUPER_RESOLUTION_ENDPOINT (a SageMaker endpoint that restores frames the
edge shrank to fit its uplink before detection; empty = detect on the shrunk frame),
SUPER_RESOLUTION_MODEL_PREFIX (default sr-models).
Face watch-list (face_watch.py): FACE_SEARCH (enabled|disabled, default disabled), FACE_COLLECTION
(required when enabled), FACE_MATCH_THRESHOLD (0-100, default 80), FACE_MIN_CONFIDENCE (0-100, default
90), FACE_MIN_SIZE_PX (at 1080p, default 40), FACE_ALERT_COOLDOWN_S (default 600), FACE_MATCH_TTL_DAYS
(default 30), FACE_MATCHES_TABLE (required when enabled: the table of matches and cooldowns, keyed by person).
Fleet console (fleet.py): FLEET_TABLE (the table edge heartbeats are kept in; empty = heartbeats are
counted and dropped).
Logging is Powertools' own: POWERTOOLS_LOG_LEVEL (default INFO), POWERTOOLS_SERVICE_NAME.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigError


class LambdaSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    frames_bucket: str = Field(min_length=1)
    frames_table: str = Field(min_length=1)
    alert_topic_arn: str = Field(min_length=1)
    results_queue_url: str = Field(min_length=1)
    failed_records_queue_url: str = ""
    detector_backend: Literal["rekognition", "sagemaker"] = "rekognition"
    sagemaker_endpoint: str = ""
    watch_labels: Annotated[frozenset[str], NoDecode] = frozenset({"person"})
    min_confidence: float = Field(60.0, ge=0.0, le=100.0)
    alert_min_confidence: float | None = Field(None, ge=0.0, le=100.0)
    alert_cooldown_s: float = Field(300.0, ge=0.0, le=7 * 86400.0)
    max_labels: int = Field(20, ge=1, le=1000)
    item_ttl_days: int = Field(30, ge=1, le=3650)
    record_reserve_s: float = Field(20.0, ge=0.0, le=900.0)
    super_resolution_endpoint: str = ""
    super_resolution_model_prefix: str = "sr-models"
    face_search: Literal["enabled", "disabled"] = "disabled"
    face_collection: str = ""
    face_match_threshold: float = Field(80.0, ge=0.0, le=100.0)
    face_min_confidence: float = Field(90.0, ge=0.0, le=100.0)
    face_min_size_px: float = Field(40.0, ge=1.0, le=1080.0)
    face_alert_cooldown_s: float = Field(600.0, ge=0.0, le=7 * 86400.0)
    face_match_ttl_days: int = Field(30, ge=1, le=3650)
    face_matches_table: str = ""
    fleet_table: str = ""

    @field_validator("detector_backend", mode="before")
    @classmethod
    def _lower_backend(cls, value: Any) -> Any:
        return value.strip().lower() or "rekognition" if isinstance(value, str) else value

    @field_validator("face_search", mode="before")
    @classmethod
    def _lower_switch(cls, value: Any) -> Any:
        return value.strip().lower() or "disabled" if isinstance(value, str) else value

    @field_validator("watch_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return frozenset(str(label).strip().lower() for label in value if str(label).strip())

    @model_validator(mode="after")
    def _check_backend(self) -> LambdaSettings:
        if self.detector_backend == "sagemaker" and not self.sagemaker_endpoint:
            raise ValueError("SAGEMAKER_ENDPOINT is not set but DETECTOR_BACKEND is sagemaker")
        if self.face_search == "enabled" and not self.face_collection:
            raise ValueError("FACE_COLLECTION is not set but FACE_SEARCH is enabled")
        if self.face_search == "enabled" and not self.face_matches_table:
            raise ValueError("FACE_MATCHES_TABLE is not set but FACE_SEARCH is enabled")
        return self

    @property
    def alert_confidence(self) -> float:
        return self.min_confidence if self.alert_min_confidence is None else self.alert_min_confidence

    def describe(self) -> str:
        target = self.sagemaker_endpoint if self.detector_backend == "sagemaker" else "DetectLabels"
        dead_letters = self.failed_records_queue_url or "the event source (no FAILED_RECORDS_QUEUE_URL)"
        return (
            f"detector {self.detector_backend} ({target}), frames to s3://{self.frames_bucket} and table "
            f"{self.frames_table}, alerts on {sorted(self.watch_labels)} >= {self.alert_confidence:g}% "
            f"(cooldown {self.alert_cooldown_s:g} s), results to {self.results_queue_url}, "
            f"records that can never succeed to {dead_letters}"
        )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def from_environ(model: type[SettingsT], environ: Mapping[str, str] | None) -> SettingsT:
    """``model`` from ``environ`` (variable names in any case), or from the process environment when None."""
    if environ is None:
        return model()  # required fields come from the environment
    return model.model_validate({name.lower(): value for name, value in environ.items()})


def first_error(error: ValidationError) -> tuple[str, dict[str, Any]]:
    """The variable name (upper case) of the first validation error, and that error."""
    first = error.errors()[0]
    return (str(first["loc"][0]).upper() if first["loc"] else ""), dict(first)


def load_settings(environ: Mapping[str, str] | None = None) -> LambdaSettings:
    """The settings from ``environ`` (default: the process environment); ConfigError names the first bad variable."""
    try:
        return from_environ(LambdaSettings, environ)
    except ValidationError as error:
        name, first = first_error(error)
        if first["type"] in ("missing", "string_too_short"):
            raise ConfigError(f"environment variable {name} is not set (the detector Lambda needs "
                              "FRAMES_BUCKET, FRAMES_TABLE, ALERT_TOPIC_ARN, RESULTS_QUEUE_URL).") from None
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name} {message}." if name else f"{message}.") from None
