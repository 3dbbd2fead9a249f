"""`hybridcam cost` with a measured send fraction: the 2019 study's 2-hour event priced with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cost_model.event_study import SendFractionError, event_cost, fraction_from_file, rate_sentence
from cost_model.price_sets import load_price_set


@pytest.fixture(scope="module")
def prices_2019():
    return load_price_set("2019-eu-west-1")


def test_sending_every_master_frame_reproduces_the_studys_216_usd(prices_2019) -> None:
    cost = event_cost(1.0, prices_2019)
    assert cost.images == 216_000 and cost.rekognition_usd == pytest.approx(216.0, abs=0.005)


def test_a_measured_fraction_scales_the_rekognition_bill(prices_2019) -> None:
    cost = event_cost(0.025, prices_2019)  # 2 masters x 15 fps x 7,200 s x 2.5% = 5,400 images at 1 USD/1,000
    assert cost.images == pytest.approx(5_400) and cost.rekognition_usd == pytest.approx(5.40, abs=0.005)
    assert "over the 5 USD goal" in cost.sentence("test")  # the issue asks for at most 5 USD
    assert "within the 5 USD goal" in event_cost(0.02, prices_2019).sentence("test")
    with pytest.raises(SendFractionError):
        event_cost(1.5, prices_2019)
    # 0.4 frames/s per camera at 15 fps cameras: 2 x 0.4 x 7,200 = 5,760 images
    assert "5,760 images, 5.76 USD" in rate_sentence(0.4, prices_2019)


def test_the_fraction_comes_from_an_evaluator_json_or_a_run_file(tmp_path: Path) -> None:
    evaluation = {"clips": [
        {"name": "a", "policies": [{"label": "adaptive", "sent_fraction": 0.03}, {"label": "every_nth N=5", "sent_fraction": 0.2}]},
        {"name": "b", "fps": 10.0, "policies": [{"label": "adaptive", "sent_fraction": 0.04}]}]}
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    measured = fraction_from_file(tmp_path / "eval.json")
    assert measured.fraction == 0.04 and "b" in measured.source and measured.sent_per_s == 0.4
    (tmp_path / "run.json").write_text(json.dumps({"send_fraction": 0.01, "policy": "adaptive"}))
    assert fraction_from_file(tmp_path / "run.json").fraction == 0.01
    # An object-level evaluation: the fraction pooled over its clips, with the objects it bought.
    evaluation = {"clips": [
        {"name": "a", "fps": 10.0, "frames": 700, "policies": [
            {"label": "adaptive", "sent": 14, "sent_fraction": 0.02, "objects": 3, "objects_seen": 3}]},
        {"name": "b", "fps": 60.0, "frames": 1800, "policies": [
            {"label": "adaptive", "sent": 36, "sent_fraction": 0.02, "objects": 40, "objects_seen": 39}]},
        {"name": "c", "fps": 12.0, "frames": 36, "policies": [
            {"label": "adaptive", "sent": 2, "sent_fraction": 2 / 36, "objects": 2, "objects_seen": 2}]}]}
    (tmp_path / "objects.json").write_text(json.dumps(evaluation))
    measured = fraction_from_file(tmp_path / "objects.json")
    assert measured.fraction == pytest.approx(52 / 2536)  # not the 3-second clip's 5.6%
    assert "the cloud saw 44 of 45 objects (98%), 1.16 frames per object" in measured.source
    assert measured.sent_per_s == pytest.approx(52 / (70 + 30 + 3))
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SendFractionError, match="neither"):
        fraction_from_file(tmp_path / "other.json")


def test_the_command_prints_the_event_and_refuses_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"send_fraction": 0.02, "policy": "adaptive"}))
    done = subprocess.run([sys.executable, "-m", "hybridcam", "cost", "--no-chart", "--send-fraction-from",
                           str(tmp_path / "run.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4,320 images, 4.32 USD of Rekognition, within the 5 USD goal" in " ".join(done.stdout.split())
    bad = subprocess.run([sys.executable, "-m", "hybridcam", "cost", "--no-chart", "--send-fraction-from",
                          str(tmp_path / "missing.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
