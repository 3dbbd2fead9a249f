"""Monthly cost against sampling rate for each architecture: a PNG and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from cost_model.estimate import ArchitectureEstimate, estimate_all  # noqa: E402
from cost_model.price_sets import PriceSet  # noqa: E402
from cost_model.scenario import ARCHITECTURES, Scenario  # noqa: E402

CHART_WIDTH_PX = 1000
CHART_HEIGHT_PX = 600
CHART_DPI = 100
POINTS = 40


@dataclass(frozen=True)
class SamplingCurve:
    sampled_fps: list[float]
    monthly_usd: dict[str, list[float]]  # architecture key -> cost at each sampling rate


def sampling_rates(scenario: Scenario) -> list[float]:
    """Log-spaced per-camera sampling rates from one frame a minute up to the camera frame rate."""
    low = min(1 / 60, scenario.fps)
    return [float(x) for x in np.geomspace(low, scenario.fps, POINTS)]


def sampling_curve(scenario: Scenario, prices: PriceSet) -> SamplingCurve:
    """Cost of every architecture across sampling rates (always from the scenario's load model)."""
    rates = sampling_rates(scenario)
    costs: dict[str, list[float]] = {key: [] for key in scenario.architectures}
    for rate in rates:
        for estimate in estimate_all(scenario.with_sampled_fps(rate), prices):
            costs[estimate.key].append(estimate.total)
    return SamplingCurve(rates, costs)


def render_png(curve: SamplingCurve, scenario: Scenario, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(CHART_WIDTH_PX / CHART_DPI, CHART_HEIGHT_PX / CHART_DPI), dpi=CHART_DPI)
    try:
        floor = 0.01  # a log axis cannot show 0 USD; such points sit on the floor
        for key, costs in curve.monthly_usd.items():
            ax.plot(curve.sampled_fps, [max(c, floor) for c in costs], label=ARCHITECTURES[key], linewidth=2)
        ax.axvline(scenario.sampled_fps, color="grey", linestyle="--", linewidth=1, label="this scenario")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frames per second per camera sent to the cloud (sampling rate)")
        ax.set_ylabel("USD per month")
        ax.set_title(
            f"{scenario.cameras} cameras, {scenario.resolution} @ {scenario.fps:g} fps, "
            f"{scenario.hours_per_day:g} h/day x {scenario.days_per_month:g} days"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=CHART_DPI)
    finally:
        plt.close(fig)
    return path


def _table_html(estimates: list[ArchitectureEstimate]) -> str:
    names: list[str] = []
    for estimate in estimates:
        names.extend(item.name for item in estimate.items if item.name not in names)
    head = "".join(f"<th>{html.escape(e.title)}</th>" for e in estimates)
    rows = []
    for name in names:
        cells = []
        for estimate in estimates:
            item = estimate.item(name)
            cells.append(f"<td>{item.usd:,.2f}</td>" if item else "<td></td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    totals = "".join(f"<td><b>{e.total:,.2f}</b></td>" for e in estimates)
    per_hour = "".join(f"<td>{e.per_camera_hour:,.4f}</td>" for e in estimates)
    rows.append(f"<tr><td><b>Monthly total (USD)</b></td>{totals}</tr>")
    rows.append(f"<tr><td>USD per camera-hour</td>{per_hour}</tr>")
    return f"<table><tr><th>Line item (USD/month)</th>{head}</tr>{''.join(rows)}</table>"


def render_html(png_path: Path, estimates: list[ArchitectureEstimate], lines: list[str], path: Path) -> Path:
    """One file with the chart inlined as base64: opens with no network access."""
    encoded = base64.b64encode(png_path.read_bytes()).decode("ascii")
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hybridcam cost estimate</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>hybridcam cost estimate</h1>
<img alt="Monthly cost against sampling rate" width="{CHART_WIDTH_PX}" height="{CHART_HEIGHT_PX}"
 src="data:image/png;base64,{encoded}">
{_table_html(estimates)}
{paragraphs}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (raises ValueError if not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
