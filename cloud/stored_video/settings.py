"""Settings of `hybridcam analyze-video` (env prefix HYBRIDCAM_VIDEO_, or a .env file).

The stack's resources (bucket, video-jobs topic, queue and role) come from the stack's outputs unless set here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError, describe_validation_error

ENV_PREFIX = "HYBRIDCAM_VIDEO_"


class VideoAnalysisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    output_dir: Path = Field(Path("runs/video-analysis"), description="where each analysis gets its folder")
    recordings_dir: Path = Field(Path("runs/demo/program/recordings"),
                                 description="the compositor's MP4 segments, for --recording")
    bucket: str | None = Field(None, description="upload bucket (default: the stack's FramesBucketName)")
    topic_arn: str | None = Field(None, description="SNS topic Rekognition notifies (default: stack output)")
    role_arn: str | None = Field(None, description="role Rekognition publishes with (default: stack output)")
    queue_url: str | None = Field(None, description="SQS queue subscribed to the topic (default: stack output)")
    min_confidence: float = Field(50.0, ge=0, le=100, description="lowest label confidence kept (0-100)")
    timeout_s: float = Field(3600.0, gt=0, description="how long to wait for the job's completion message")
    watch_labels: str = Field("Person", description="comma-separated labels the `watch` highlight metric counts")
    highlights: int = Field(5, ge=1, le=50, description="how many segments the highlights reel holds")
    segment_s: float = Field(6.0, gt=0, description="length of one highlight segment in seconds")
    fade_s: float = Field(0.5, ge=0, description="cross-fade between highlight segments in seconds")
    metric: Literal["people", "watch", "motion"] = Field("people", description="what makes a stretch interesting")
    price_set: str = Field("us-east-1-2026", description="price file for the job's cost")
    face_search: bool = Field(True, description="also search the video's faces in the watch-list collection, when it holds faces")
    face_match_threshold: float = Field(80.0, ge=0, le=100, description="similarity (0-100) that counts as a watch-list match")

    def watch_label_set(self) -> frozenset[str]:
        return frozenset(label.strip() for label in self.watch_labels.split(",") if label.strip())


def load_video_settings(**overrides: object) -> VideoAnalysisSettings:
    """Settings from the environment, with the command line's values (None = not given) on top."""
    given: dict[str, Any] = {name: value for name, value in overrides.items() if value is not None}
    try:
        return VideoAnalysisSettings(**given)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, ENV_PREFIX)) from None
