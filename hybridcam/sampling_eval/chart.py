"""The sampling trade-off: object recall and first-send delay against frames sent, one curve per policy family (PNG + HTML)."""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from hybridcam.sampling_eval.replay import Score  # noqa: E402

CHART_WIDTH_PX = 1000
CHART_HEIGHT_PX = 600
CHART_DPI = 100


def render_png(scores_by_clip: dict[str, list[Score]], path: Path) -> Path:
    """Top row: object recall against frames sent; bottom row: median first-send delay of objects. One column per clip."""
    clips = list(scores_by_clip)
    fig, axes = plt.subplots(2, len(clips), figsize=(CHART_WIDTH_PX / CHART_DPI, CHART_HEIGHT_PX / CHART_DPI),
                             dpi=CHART_DPI, squeeze=False, sharex="col")
    try:
        for column, clip in enumerate(clips):
            families: dict[str, list[Score]] = defaultdict(list)
            for score in scores_by_clip[clip]:
                families[score.family].append(score)
            recall_ax, delay_ax = axes[0][column], axes[1][column]
            for family, scores in families.items():
                scores.sort(key=lambda s: s.sent_fraction)
                marker = "o-" if len(scores) > 1 else "*"
                size = 7 if len(scores) > 1 else 12
                sent = [100 * s.sent_fraction for s in scores]
                recall_ax.plot(sent, [100 * s.object_recall for s in scores], marker, label=family, markersize=size)
                delays = [(x, s.object_delay_median_s) for x, s in zip(sent, scores, strict=True)
                          if s.object_delay_median_s is not None]
                delay_ax.plot([x for x, _ in delays], [d for _, d in delays], marker, label=family, markersize=size)
            recall_ax.axhline(95, color="grey", linestyle=":", linewidth=1)
            delay_ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
            for ax in (recall_ax, delay_ax):
                ax.axvline(5, color="grey", linestyle="--", linewidth=1)
                ax.set_xscale("log")
                ax.grid(True, which="both", alpha=0.3)
            recall_ax.set_ylim(-2, 102)
            delay_ax.set_yscale("symlog", linthresh=1.0)
            recall_ax.set_title(clip, fontsize=9)
            delay_ax.set_xlabel("frames sent to the cloud (% of master frames)")
        axes[0][0].set_ylabel("objects seen by the cloud (%)")
        axes[1][0].set_ylabel("median first-send delay (s)")
        axes[0][0].legend(fontsize=8, loc="lower right", framealpha=0.9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=CHART_DPI)
    finally:
        plt.close(fig)
    return path


def render_html(png_path: Path, tables: dict[str, list[list[str]]], header: list[str], notes: list[str],
                path: Path) -> Path:
    """One file with the chart inlined as base64: opens with no network access."""
    encoded = base64.b64encode(png_path.read_bytes()).decode("ascii")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    sections = []
    for clip, rows in tables.items():
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        sections.append(f"<h2>{html.escape(clip)}</h2><table><tr>{head}</tr>{body}</table>")
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hybridcam sampling evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>hybridcam sampling evaluation</h1>
<img alt="Object recall against frames sent, one curve per policy" width="{CHART_WIDTH_PX}" height="{CHART_HEIGHT_PX}"
 src="data:image/png;base64,{encoded}">
{''.join(sections)}
{paragraphs}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
