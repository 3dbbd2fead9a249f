"""Counters of a real pipeline run (written by the cloud-path sampler) and their projection to a month.

The JSON format is defined in docs/cost.md ("Run counters").
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cost_model.estimate import CloudLoad
from cost_model.scenario import Scenario


class RunCountersError(ValueError):
    """The run file is missing or malformed; the message is one sentence for the user."""


class RunCounters(BaseModel):
    # Unknown keys are allowed so the sampler can add fields without breaking older estimators.
    model_config = ConfigDict(extra="ignore")

    frames_sampled: int = Field(..., ge=0, description="frames the sampler sent to the cloud path")
    bytes_sent: int = Field(..., ge=0, description="payload bytes put to Kinesis (all records)")
    records_sent: int = Field(..., ge=0, description="Kinesis records put")
    handler_invocations: int = Field(..., ge=0, description="Lambda handler invocations")
    alerts: int = Field(..., ge=0, description="alerts published")
    duration_s: float = Field(..., gt=0, description="wall-clock length of the run in seconds")
    cameras: int = Field(..., ge=1, description="cameras whose frames the sampler sent (the masters)")

    @property
    def sampled_fps_per_camera(self) -> float:
        return self.frames_sampled / self.duration_s / self.cameras


def load_run_counters(path: Path) -> RunCounters:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunCountersError(f"run file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise RunCountersError(f"run file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return RunCounters.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise RunCountersError(f"run file {path.name}: {field}: {first['msg']}") from None


def project_to_month(run: RunCounters, scenario: Scenario) -> CloudLoad:
    """Scale the run to the scenario's active month and to its number of master cameras."""
    scale = scenario.active_hours * 3600 / run.duration_s * scenario.master_count / run.cameras
    camera_scale = scenario.master_count / run.cameras
    return CloudLoad(
        frames=run.frames_sampled * scale,
        records=run.records_sent * scale,
        bytes_sent=run.bytes_sent * scale,
        invocations=run.handler_invocations * scale,
        alerts=run.alerts * scale,
        peak_records_per_s=run.records_sent / run.duration_s * camera_scale,
        peak_bytes_per_s=run.bytes_sent / run.duration_s * camera_scale,
    )
