"""The site file's ``events`` section: rules over zones and tracks, their schedules, clips and retention.

A rule names labels, a zone (or a line for ``cross``) and a condition. Conditions are a tagged
union on ``kind``: a new kind (for example ``action``, a pose/action label per track) is one more
model here and one more evaluator in services/events/rule_engine.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.zones import NAME_PATTERN

Severity = Literal["low", "medium", "high"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Channel = Literal["sms", "email"]


class EnterCondition(BaseModel):
    """A track enters the zone (after ``inertia`` frames inside, against flicker at its edge)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["enter"] = "enter"


class DwellCondition(BaseModel):
    """A track stays in the zone longer than ``seconds`` (loitering)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["dwell"] = "dwell"
    seconds: float = Field(gt=0.0, le=86_400.0)


class CountCondition(BaseModel):
    """More than ``more_than`` tracks of the rule's labels in the zone at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["count"] = "count"
    more_than: int = Field(ge=0, le=10_000)


class CrossCondition(BaseModel):
    """A track crosses the rule's line; ``left_to_right`` as seen walking along the line from its first point."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cross"] = "cross"
    direction: Literal["left_to_right", "right_to_left", "any"] = "any"


Condition = Annotated[EnterCondition | DwellCondition | CountCondition | CrossCondition, Field(discriminator="kind")]


class TimeWindow(BaseModel):
    """Days and a daily window in the site's time zone; ``end`` before ``start`` runs past midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: tuple[Weekday, ...] = WEEKDAYS
    start: dt.time = dt.time(0, 0)
    end: dt.time = dt.time(23, 59, 59)

    def holds(self, local: dt.datetime) -> bool:
        moment = local.time()
        if self.start <= self.end:
            return WEEKDAYS[local.weekday()] in self.days and self.start <= moment < self.end
        if moment >= self.start:  # the evening part belongs to the day it starts on
            return WEEKDAYS[local.weekday()] in self.days
        return moment < self.end and WEEKDAYS[(local.weekday() - 1) % 7] in self.days


class CloudConfirmation(BaseModel):
    """Send the matching frame to the cloud at once; alert only if it finds one of ``labels`` (or, with
    ``watch_list``, a face on the watch list) within ``within_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: tuple[str, ...] = ()
    watch_list: bool = False
    within_s: float = Field(10.0, gt=0.0, le=300.0)

    @model_validator(mode="after")
    def _something_to_wait_for(self) -> CloudConfirmation:
        if not self.labels and not self.watch_list:
            raise ValueError("cloud_confirm needs labels to wait for, or watch_list: true")
        return self


class RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    cameras: tuple[str, ...] = Field((), description="cameras the rule watches; empty = every camera that has its zone or line")
    labels: tuple[str, ...] = Field(("person",), min_length=1)
    zone: str | None = None
    line: str | None = None
    condition: Condition = EnterCondition()
    inertia: int = Field(2, ge=1, le=100, description="frames a track must be inside before it counts")
    severity: Severity = "medium"
    schedule: tuple[TimeWindow, ...] = Field((), description="when the rule is on; empty = always")
    notify: tuple[Channel, ...] = ()
    cooldown_s: float = Field(300.0, ge=0.0, le=86_400.0, description="no second notification for the same track of this rule")
    cloud_confirm: CloudConfirmation | None = None

    @field_validator("cameras", "labels", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _place(self) -> RuleConfig:
        if self.condition.kind == "cross":
            if self.line is None:
                raise ValueError(f"rule {self.name!r} is a cross rule and needs a line")
        elif self.zone is None:
            raise ValueError(f"rule {self.name!r} needs a zone")
        return self

    def active_at(self, ts: float, zone: ZoneInfo) -> bool:
        if not self.schedule:
            return True
        local = dt.datetime.fromtimestamp(ts, tz=zone)
        return any(window.holds(local) for window in self.schedule)


class EventsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("UTC", description="IANA time zone of the site's schedules, e.g. Europe/Paris")
    pre_roll_s: float = Field(5.0, ge=0.0, le=60.0)
    post_roll_s: float = Field(5.0, ge=0.0, le=60.0)
    close_after_s: float = Field(1.0, gt=0.0, le=600.0, description="the condition must be false this long to close an event")
    retention_days: float = Field(30.0, gt=0.0, le=3650.0)
    disk_budget_mb: float = Field(2048.0, gt=0.0, description="clips and snapshots beyond it are removed, oldest first")
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time zone {value!r} is not an IANA name such as Europe/Paris") from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> EventsConfig:
        names = [rule.name for rule in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(repeated)}")
        return self

    @property
    def zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
