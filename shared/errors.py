"""Errors a user can act on, and how validation problems become one sentence."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigError(Exception):
    """A configuration problem, reported to the user as one sentence without a traceback."""


def describe_validation_error(error: ValidationError, env_prefix: str | None = None) -> str:
    """Turn a pydantic error into a short sentence naming the offending field(s).

    With ``env_prefix`` a field is named as its environment variable (HYBRIDCAM_FOO).
    """
    parts = []
    for item in error.errors()[:3]:
        if not item["loc"]:  # a rule across fields (a model validator) says it all itself
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
        location = ".".join(str(p) for p in item["loc"])
        if env_prefix and item["loc"]:
            location = f"{env_prefix}{str(item['loc'][0]).upper()}"
        message = item["msg"]
        if "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], (dict, list)):
            message = f"{message} (got {item['input']!r})"
        parts.append(f"{location}: {message}")
    more = len(error.errors()) - len(parts)
    suffix = f" (and {more} more)" if more > 0 else ""
    return "; ".join(parts) + suffix
