"""Prints the fault table after a run that recorded any fault scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.report import recorded_faults, write_report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = recorded_faults()
    if not rows:
        return
    header = ("scenario", "injected", "recovery s", "expected", "seen", "lost", "dup", "restarts")
    table = [header] + [
        (
            r.scenario,
            r.injected,
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}",
            str(r.expected),
            str(r.seen),
            str(r.lost),
            str(r.duplicated),
            str(r.restarts),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    terminalreporter.section("fault injection")
    for row in table:
        terminalreporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    for r in rows:
        if r.notes:
            terminalreporter.write_line(f"{r.scenario}: {r.notes}")
    write_report(Path("fault-report.json"))
