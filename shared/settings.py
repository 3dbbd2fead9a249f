"""Settings every service shares, read from HYBRIDCAM_* environment variables or a .env file.

Each service defines its own settings model that inherits from :class:`CommonSettings`
and adds fields whose names start with the service's name (HYBRIDCAM_EDGE_MODEL,
HYBRIDCAM_CAPTURE_RING_SLOTS, ...), so one prefix and one .env file serve the whole site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError, describe_validation_error

ENV_PREFIX = "HYBRIDCAM_"
DEFAULT_SITE_FILE = Path(__file__).resolve().parent.parent / "config" / "site.demo.yaml"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis server holding the streams "
                           "(redis://:PASSWORD@host:6379/0 when it has a password)")
    frames_redis_url: str = Field(
        "", description="a node-local Redis for the frame references and edge inference's work queue, when a site's "
                        "cameras are spread over several servers (each server its own; the site Redis at redis_url then "
                        "gets the metadata and each frame as an inline JPEG); empty = everything on redis_url")
    site_file: Path = Field(DEFAULT_SITE_FILE, description="YAML file describing the site's cameras")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stream_maxlen: int = Field(2000, ge=10, description="approximate length bound of every stream")
    health_port: int = Field(0, ge=0, le=65535, description="HTTP port of /health; 0 = no HTTP endpoint")
    redis_password: SecretStr | None = Field(None, description="password of the site's Redis (compose passes it to "
                                             "redis-server as requirepass); added to redis_url when that has none")
    uplink_kbps: float = Field(0.0, ge=0.0, description="the site's uplink to the cloud in kbit/s: the sampler fits frames and "
                               "super-resolution patches into it, the program's RTMP push takes its share; 0 = no budget")
    uplink_program_kbps: float = Field(0.0, ge=0.0, description="the part of HYBRIDCAM_UPLINK_KBPS kept for the program's RTMP "
                                       "push (the compositor caps its encode at it); the sampler gets the rest")
    stall_exit_s: float = Field(120.0, ge=0, description="exit (code 70) when the main loop made no progress this long, "
                                "so the restart policy restarts the service; 0 = never")

    @model_validator(mode="after")
    def _program_fits_the_uplink(self) -> CommonSettings:
        if self.uplink_kbps and self.uplink_program_kbps >= self.uplink_kbps:
            raise ValueError("HYBRIDCAM_UPLINK_PROGRAM_KBPS must leave part of HYBRIDCAM_UPLINK_KBPS for the sampler")
        return self

    @property
    def sampler_uplink_kbps(self) -> float:
        """What the sampler may send: the uplink less the program push's part (0 = no budget)."""
        return max(0.0, self.uplink_kbps - self.uplink_program_kbps) if self.uplink_kbps else 0.0

    @model_validator(mode="after")
    def _password_in_url(self) -> CommonSettings:
        password = self.redis_password.get_secret_value() if self.redis_password else ""
        if password and not urlsplit(self.redis_url).password:
            self.redis_url = with_password(self.redis_url, password)
        if password and self.frames_redis_url and not urlsplit(self.frames_redis_url).password:
            self.frames_redis_url = with_password(self.frames_redis_url, password)
        return self

    @property
    def frame_bus_url(self) -> str:
        """Where frame references and the edge's work queue live: the node-local Redis, else the site's."""
        return self.frames_redis_url or self.redis_url


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redacted_url(url: str) -> str:
    """A URL fit for logs: any password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(model: type[SettingsT], **overrides: object) -> SettingsT:
    """Build a settings model; a bad value becomes one ConfigError naming the variable.

    ``overrides`` are command-line values; a None (option not given) leaves the
    environment's or the default value in place.
    """
    given: dict[str, Any] = {name: value for name, value in overrides.items() if value is not None}
    try:
        return model(**given)
    except ValidationError as error:
        raise ConfigError(f"bad setting {describe_validation_error(error, ENV_PREFIX)}") from None
