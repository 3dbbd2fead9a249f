"""One event priced live (DetectLabels per frame) against its recordings analysed afterwards (per video minute)."""

from __future__ import annotations

import pytest

from cost_model.after_event import event_options
from cost_model.price_sets import load_price_set
from cost_model.scenario import Scenario
from hybridcam.cli import main as hybridcam_main


def test_the_2019_event_live_and_afterwards() -> None:
    scenario = Scenario(cameras=6, masters=[1, 2], fps=15, sample_fps=1)
    options = {o.name: o for o in event_options(scenario, load_price_set("us-east-1-2026"), event_hours=2)}
    every_frame = options["live: every master frame (2 x 15 fps)"]
    assert every_frame.quantity == "216,000 images" and every_frame.usd == pytest.approx(216.0)  # what the study paid
    assert options["live: sampled master frames (1 fps each)"].usd == pytest.approx(14.4)
    program = options["afterwards: the program recording"]
    assert program.quantity == "120 video minutes" and program.usd == pytest.approx(12.0) and program.unsure
    assert options["afterwards: the 2 master recordings"].usd == pytest.approx(24.0)
    assert options["afterwards: all 6 camera recordings"].usd == pytest.approx(72.0)


def test_the_cost_command_prints_the_event_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert hybridcam_main(["cost", "--cameras", "6", "--masters", "1,2", "--fps", "15", "--event-hours", "2",
                           "--no-chart"]) == 0
    printed = capsys.readouterr().out
    assert "One 2-hour event: live frames against its recordings afterwards" in printed
    assert "afterwards: the program recording" in printed and "12.00 (unsure)" in printed
