"""Load-derived sizing (shards, instances), the from-run projection and the break-even."""

from __future__ import annotations

import pytest

from cost_model.breakeven import rekognition_vs_endpoint
from cost_model.estimate import CloudLoad, estimate_architecture, kinesis_shards
from cost_model.price_sets import load_price_set
from cost_model.run_counters import RunCounters, project_to_month
from cost_model.scenario import MIB, Scenario


@pytest.fixture(scope="module")
def prices():
    return load_price_set("us-east-1-2026")


def load(records_per_s: float, bytes_per_s: float) -> CloudLoad:
    return CloudLoad(1, 1, 1, 1, 0, records_per_s, bytes_per_s)


@pytest.mark.parametrize(
    ("records_per_s", "bytes_per_s", "shards"),
    [
        (1, 1, 1),
        (1_000, 1_000, 1),
        (1_001, 1_000, 2),  # records/s limit
        (2_500, 1_000, 3),
        (10, MIB, 1),
        (10, MIB + 1, 2),  # bytes/s limit
        (10, 3 * MIB, 3),
    ],
)
def test_shards_follow_the_heavier_of_bytes_and_records(records_per_s, bytes_per_s, shards):
    assert kinesis_shards(load(records_per_s, bytes_per_s)) == shards


def test_cloud_frames_shards_come_from_the_scenario_load(prices):
    # 8 cameras x 2 frames/s x 300 KB = 4.8 MB/s = 4.58 MiB/s -> 5 shards, 24 x 30 h each.
    scenario = Scenario(cameras=8, sample_fps=2, jpeg_kb=300)
    estimate = estimate_architecture("cloud-frames", scenario, prices)
    assert estimate.item("Kinesis shard-hours").quantity == 5 * 720
    # 300,000-byte records are 12 PUT payload units of 25 KiB (300,000 / 25,600 = 11.7).
    frames = 8 * 2 * 720 * 3600
    assert estimate.item("Kinesis PUT payload units").quantity == frames * 12


def test_hybrid_sends_only_masters_and_adds_the_edge_box(prices):
    scenario = Scenario(cameras=8, masters="1,2", sample_fps=0.5, edge_box_usd=720, edge_box_life_months=36,
                        edge_box_watts=40, electricity_usd_per_kwh=0.25, cameras_per_edge_box=8)
    estimate = estimate_architecture("hybrid", scenario, prices)
    assert estimate.item("Rekognition DetectLabels").quantity == 2 * 0.5 * 720 * 3600
    assert estimate.item("Edge box amortised").usd == pytest.approx(20.0)
    assert estimate.item("Edge box electricity").usd == pytest.approx(0.040 * 720 * 0.25)


def test_edge_only_has_no_cloud_items(prices):
    estimate = estimate_architecture("edge-only", Scenario(cameras=20, cameras_per_edge_gpu_box=8), prices)
    assert [i.name for i in estimate.items] == ["Edge GPU box amortised", "Edge GPU box electricity"]
    assert estimate.item("Edge GPU box amortised").quantity == 3


def test_rekognition_streaming_architecture_says_it_is_closed_to_new_customers(prices):
    estimate = estimate_architecture("cloud-video-rekognition", Scenario(), prices)
    assert any("closed to new customers on 2026-04-30" in note for note in estimate.notes)


def test_per_camera_hour_divides_by_camera_hours(prices):
    scenario = Scenario(cameras=3, hours_per_day=10, days_per_month=20)
    estimate = estimate_architecture("edge-only", scenario, prices)
    assert estimate.per_camera_hour == pytest.approx(estimate.total / (3 * 10 * 20))


def test_run_projection_scales_time_and_master_cameras():
    run = RunCounters(frames_sampled=600, bytes_sent=600 * 200_000, records_sent=600, handler_invocations=60,
                      alerts=4, duration_s=600, cameras=1)
    scenario = Scenario(cameras=2, masters="all", hours_per_day=24, days_per_month=30)
    projected = project_to_month(run, scenario)
    scale = 720 * 3600 / 600 * 2  # a month of active seconds over the run, and 2 masters instead of 1
    assert projected.frames == pytest.approx(600 * scale)
    assert projected.invocations == pytest.approx(60 * scale)
    assert projected.alerts == pytest.approx(4 * scale)
    assert projected.peak_records_per_s == pytest.approx(2.0)


def test_breakeven_between_rekognition_and_an_always_on_endpoint(prices):
    scenario = Scenario(cameras=4, sagemaker_instance="ml.m5.xlarge", hours_per_day=24, days_per_month=30)
    result = rekognition_vs_endpoint(scenario, prices)
    assert result.endpoint_usd_per_month == pytest.approx(0.23 * 720)  # 165.60
    assert result.images_per_month == pytest.approx(165_600)  # all inside the 1 USD/1,000 tier
    assert result.frames_per_s == pytest.approx(165_600 / (720 * 3600))
    assert result.frames_per_s_per_camera == pytest.approx(result.frames_per_s / 4)
    # A GPU endpoint: 0.736 x 720 = 529.92 USD a month, still inside the first 1,000,000-image tier.
    gpu = rekognition_vs_endpoint(scenario.model_copy(update={"sagemaker_instance": "ml.g4dn.xlarge"}), prices)
    assert gpu.images_per_month == pytest.approx(529_920)


def test_dynamodb_writes_count_each_write_of_a_frame_item_and_its_indexes(prices):
    quiet = Scenario(cameras=2, masters=[1], sample_fps=1.0, alerts_per_camera_hour=0.0)
    frames = 3600 * 24 * 30  # one master at 1 frame/s
    writes = estimate_architecture("hybrid", quiet, prices).item("DynamoDB writes")
    assert writes is not None and writes.quantity == pytest.approx(frames * 2 * 3)  # stored + result sent, x (item + 2 indexes)
    alerting = estimate_architecture("hybrid", quiet.model_copy(update={"alerts_per_camera_hour": 10.0}), prices)
    alerts = 10 * 24 * 30
    assert alerting.item("DynamoDB writes").quantity == pytest.approx(frames * 6 + alerts * (2 * 4 + 2))
