"""Settings of the `hybridcam cloud` commands (env prefix HYBRIDCAM_CLOUD_, or a .env file).

HYBRIDCAM_CLOUD_STACK_NAME (default hybridcam), HYBRIDCAM_CLOUD_REGION (default: the AWS SDK's),
HYBRIDCAM_CLOUD_CODE_BUCKET (default <stack>-code-<account>-<region>), HYBRIDCAM_CLOUD_MODEL_HOST /
HYBRIDCAM_CLOUD_MODEL_PORT (local model server, default 127.0.0.1:8070), HYBRIDCAM_CLOUD_POLL_CHECKPOINT
(local poller checkpoint file, default .hybridcam/poller-checkpoints.json), HYBRIDCAM_CLOUD_FACE_COLLECTION
(face watch-list collection for `hybridcam faces`, default: the stack's FaceCollectionId output).
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError, describe_validation_error

ENV_PREFIX = "HYBRIDCAM_CLOUD_"


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    stack_name: str = "hybridcam"
    region: str | None = None
    code_bucket: str | None = None
    model_host: str = "127.0.0.1"
    model_port: int = 8070
    poll_checkpoint: str = ".hybridcam/poller-checkpoints.json"
    face_collection: str | None = None


def load_cloud_settings() -> CloudSettings:
    try:
        return CloudSettings()
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, ENV_PREFIX)) from None
