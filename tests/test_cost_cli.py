"""`python -m hybridcam.cost` (what `hybridcam cost` runs): help, errors, chart files, --from-run, prices."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cost_model.scenario import Scenario
from hybridcam.cost.__main__ import main
from hybridcam.cost.chart import CHART_HEIGHT_PX, CHART_WIDTH_PX, png_size


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybridcam.cost", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_help_explains_every_scenario_input():
    result = run_module("--help")
    assert result.returncode == 0
    text = re.sub(r"\s+", " ", result.stdout)
    for name in Scenario.model_fields:
        assert "--" + name.replace("_", "-") in text, name
    for flag in ("--scenario", "--from-run", "--refresh-prices", "--out"):
        assert flag in text
    assert "frames per second per camera sent to the cloud" in text


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--fps", "-3"], "fps"),
        (["--cameras", "many"], "cameras"),
        (["--masters", "9", "--cameras", "4"], "masters"),
        (["--detector", "yolo"], "detector"),
        (["--resolution", "big"], "resolution"),
        (["--jpeg-kb", "2000"], "jpeg_kb"),
        (["--architectures", "cloud-frames,fog"], "architectures"),
    ],
)
def test_bad_scenario_value_is_one_sentence_naming_the_field_exit_2(args, field):
    result = run_module(*args, "--no-chart")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and field in lines[0]
    assert result.stdout == ""


def test_unknown_key_in_scenario_file_is_named(tmp_path):
    scenario = tmp_path / "site.yaml"
    scenario.write_text("cameras: 2\nfsp: 10\n")
    result = run_module("--scenario", str(scenario), "--no-chart")
    assert result.returncode == 2 and "fsp" in result.stderr and "Traceback" not in result.stderr


def test_chart_png_is_a_real_image_and_html_is_self_contained(tmp_path, capsys):
    scenario = tmp_path / "site.yaml"
    scenario.write_text("cameras: 6\nmasters: [1, 2]\nsample_fps: 0.5\nhours_per_day: 12\n")
    assert main(["--scenario", str(scenario), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    png = (tmp_path / "report" / "cost.png").read_bytes()
    assert png_size(png) == (CHART_WIDTH_PX, CHART_HEIGHT_PX)
    assert len(png) > 20_000  # a drawn chart, not an empty canvas

    page = (tmp_path / "report" / "cost.html").read_text()
    references = _references(page)
    assert references, "the page should embed the chart"
    assert all(ref.startswith("data:") for ref in references), references
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    embedded = references[0].split(",", 1)[1]
    assert base64.b64decode(embedded) == png
    assert "What this means" in page and "Monthly total" in page
    assert "What this means:" in out.replace("\n", " ")


def _references(page: str) -> list[str]:
    found: list[str] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(value for name, value in attrs if name in {"src", "href"} and value)

    Collector().feed(page)
    return found


def test_table_totals_per_camera_hour_and_cheapest_line(tmp_path, capsys):
    out_json = tmp_path / "estimate.json"
    code = main(["--cameras", "4", "--sample-fps", "0.1", "--no-chart", "--json", str(out_json)])
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Monthly total" in out and "USD per camera-hour" in out and "Break-even:" in out
    data = json.loads(out_json.read_text())
    totals = {a["key"]: a["monthly_usd"] for a in data["architectures"]}
    assert set(totals) == {"cloud-frames", "cloud-video-sagemaker", "cloud-video-ec2", "hybrid", "edge-only"}
    cheapest = min(totals, key=totals.get)
    title = next(a["title"] for a in data["architectures"] if a["key"] == cheapest)
    assert f"What this means: {title} is cheapest" in out
    for architecture in data["architectures"]:
        assert architecture["monthly_usd"] == pytest.approx(sum(i["usd"] for i in architecture["items"]), abs=1e-4)


def test_from_run_projects_the_measured_counters(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({
        "frames_sampled": 600, "bytes_sent": 600 * 200_000, "records_sent": 600, "handler_invocations": 60,
        "alerts": 4, "duration_s": 600.0, "cameras": 1, "written_by": "sampler",
    }))
    out_json = tmp_path / "estimate.json"
    assert main(["--from-run", str(run), "--no-chart", "--json", str(out_json)]) == 0
    hybrid = next(a for a in json.loads(out_json.read_text())["architectures"] if a["key"] == "hybrid")
    items = {i["name"]: i for i in hybrid["items"]}
    # 600 s -> 30 days x 24 h = 2,592,000 s: x4,320.
    assert items["Rekognition DetectLabels"]["quantity"] == pytest.approx(2_592_000)
    # 1,000,000 x 0.001 + 1,592,000 x 0.0008 = 2,273.60 USD
    assert items["Rekognition DetectLabels"]["usd"] == pytest.approx(2273.60, abs=0.005)
    assert items["Lambda requests"]["quantity"] == pytest.approx(259_200)
    assert items["SNS email"]["quantity"] == pytest.approx(17_280)
    assert "measured run" in capsys.readouterr().out


def test_bad_run_file_is_one_clear_error(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"frames_sampled": 10}))
    result = run_module("--from-run", str(run), "--no-chart")
    assert result.returncode == 2 and "bytes_sent" in result.stderr and "Traceback" not in result.stderr


def test_refresh_without_credentials_uses_the_file_and_says_its_date():
    no_credentials = {
        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
    }
    result = run_module("--refresh-prices", "--no-chart", env=no_credentials)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "no AWS credentials found" in text and "2026-11-23" in text


def test_old_price_set_names_what_it_cannot_price(capsys):
    assert main(["--price-set", "2019-eu-west-1", "--no-chart", "--sagemaker-instance", "ml.m4.xlarge",
                 "--gpu-instance", "p3.2xlarge"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "not priced in set '2019-eu-west-1'" in out
    assert "figures taken 2019-01-01" in out


def test_unknown_price_set_is_one_clear_error():
    result = run_module("--price-set", "mars-1", "--no-chart")
    assert result.returncode == 2 and "mars-1" in result.stderr and "Traceback" not in result.stderr


def test_list_price_sets(capsys):
    assert main(["--list-price-sets"]) == 0
    out = capsys.readouterr().out
    assert "us-east-1-2026" in out and "2019-eu-west-1" in out


def test_out_folder_default_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--cameras", "1"]) == 0
    assert Path("cost-report/cost.png").exists() and Path("cost-report/cost.html").exists()


def test_console_command_runs_cost(capsys):
    from hybridcam.cli import main as hybridcam_main

    assert hybridcam_main(["cost", "--cameras", "2", "--no-chart"]) == 0
    assert "What this means:" in " ".join(capsys.readouterr().out.split())
