"""One row of the fault-injection table: what was injected, how long recovery took, what was lost.

Every scenario test records its row with `record_fault(FaultResult(...))`; the suite's conftest
prints all rows as one table at the end of the run and writes them to `fault-report.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class FaultResult:
    scenario: str  # short name, numbered as in docs/reliability.md ("1 kill -9 edge_infer")
    injected: str  # what was done, in words
    recovery_s: float | None  # from the end of the fault to normal service; None when nothing had to recover
    expected: int  # items (frames, detections, alerts, results) that must come out
    seen: int  # items that did come out
    lost: int  # acknowledged items missing
    duplicated: int  # items seen more than once
    restarts: int = 0  # service restarts the fault caused (not counting deliberate ones)
    notes: str = ""


_RESULTS: list[FaultResult] = []


def record_fault(result: FaultResult) -> None:
    _RESULTS.append(result)


def recorded_faults() -> list[FaultResult]:
    return list(_RESULTS)


def full_run() -> bool:
    """`make faults FULL=1`: long outage and soak forms of the scenarios."""
    return os.environ.get("HYBRIDCAM_FAULTS_FULL", "") not in ("", "0")


def write_report(path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in _RESULTS], indent=2))
