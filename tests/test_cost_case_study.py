"""A 2019 published case study, reproduced with its prices loaded as the '2019-eu-west-1' price set.

The study priced analysing 2 cameras for 2 hours. With hours_per_day=2 and days_per_month=1 the
estimator's "month" is exactly those 2 hours, and with provisioned_hours="active" the endpoint and
instance are billed for those 2 hours only, as the study did. GB is 10^9 bytes, as in the study.

Arithmetic, worked out here:
  Rekognition, 15 fps: 2 cameras x 15 frames/s x 7,200 s = 216,000 images x 1 USD/1,000 = 216.00 USD  (study: 216, right)
  Rekognition,  6 fps: 2 cameras x  6 frames/s x 7,200 s =  86,400 images x 1 USD/1,000 =  86.40 USD  (study: 86.4, right)
  One KVS stream at 100 Mbps for 2 h: 100e6 / 8 bytes/s x 7,200 s = 90e9 bytes = 90 GB x 0.00944 = 0.8496 USD
  SageMaker ml.m4.xlarge: 0.311 USD/h x 2 h = 0.622 USD
    + 2 streams: 0.622 + 2 x 0.8496 = 2.3212 USD.  The study wrote 1.4716 = 0.622 + 0.8496: it counted ONE
      stream, so its figure is wrong for 2 cameras; the estimator reproduces 1.4716 only for 1 camera.
  GPU p3.2xlarge: 3.305 USD/h x 2 h = 6.61 USD + 2 x 0.8496 = 8.3092 USD  (study: 8.3092, right: both streams)
  Office camera, 8 h/day at 1 frame/s: 8 h = 8 x 3,600 = 28,800 s, so 28,800 images = 28.80 USD a day
    (the study's hours-to-seconds step is where its figure goes wrong: 8 hours is 28,800 seconds);
    a 30-day month is 864,000 images = 864.00 USD, 22 working days 633,600 images = 633.60 USD.
"""

from __future__ import annotations

import pytest

from cost_model.estimate import estimate_architecture
from cost_model.price_sets import load_price_set
from cost_model.scenario import Scenario

CENT = 0.005


@pytest.fixture(scope="module")
def prices_2019():
    return load_price_set("2019-eu-west-1")


def study_scenario(**overrides) -> Scenario:
    values = dict(
        cameras=2, fps=15, sample_every_n=1, masters="all", hours_per_day=2, days_per_month=1,
        video_bitrate_mbps=100, provisioned_hours="active", sagemaker_instance="ml.m4.xlarge",
        gpu_instance="p3.2xlarge", sagemaker_fps_capacity=1000, gpu_fps_capacity=1000,
        alert_channel="none", api_reads_per_day=0, price_set="2019-eu-west-1",
    )
    values.update(overrides)
    return Scenario(**values)


def test_rekognition_two_cameras_two_hours_at_15_fps_is_216_usd(prices_2019):
    estimate = estimate_architecture("cloud-frames", study_scenario(), prices_2019)
    rekognition = estimate.item("Rekognition DetectLabels")
    assert rekognition.quantity == 216_000
    assert rekognition.usd == pytest.approx(216.00, abs=CENT)


def test_rekognition_at_6_fps_is_86_40_usd(prices_2019):
    estimate = estimate_architecture("cloud-frames", study_scenario(fps=6), prices_2019)
    rekognition = estimate.item("Rekognition DetectLabels")
    assert rekognition.quantity == 86_400
    assert rekognition.usd == pytest.approx(86.40, abs=CENT)


def test_sagemaker_endpoint_plus_two_streams_is_2_3212_not_the_studys_1_4716(prices_2019):
    estimate = estimate_architecture("cloud-video-sagemaker", study_scenario(), prices_2019)
    assert estimate.item("SageMaker endpoint instance-hours").usd == pytest.approx(0.622, abs=1e-9)
    assert estimate.item("KVS ingest").quantity == pytest.approx(180.0)  # 2 streams x 90 GB
    assert estimate.total == pytest.approx(2.3212, abs=1e-9)
    # The study's 1.4716 is the one-stream figure:
    one_stream = estimate_architecture("cloud-video-sagemaker", study_scenario(cameras=1), prices_2019)
    assert one_stream.total == pytest.approx(1.4716, abs=1e-9)
    # Lines the 2019 set has no price for are reported, not counted as zero.
    assert "kvs.consumed_gb" in estimate.unpriced


def test_gpu_instance_plus_two_streams_is_8_3092_usd(prices_2019):
    estimate = estimate_architecture("cloud-video-ec2", study_scenario(), prices_2019)
    assert estimate.item("EC2 GPU instance-hours").usd == pytest.approx(6.61, abs=1e-9)
    assert estimate.total == pytest.approx(8.3092, abs=1e-9)


@pytest.mark.parametrize(
    ("days", "images", "usd"),
    [(1, 28_800, 28.80), (22, 633_600, 633.60), (30, 864_000, 864.00)],
)
def test_office_camera_8_hours_a_day_at_1_frame_per_second(prices_2019, days, images, usd):
    scenario = study_scenario(cameras=1, hours_per_day=8, days_per_month=days, sample_every_n=None, sample_fps=1)
    rekognition = estimate_architecture("cloud-frames", scenario, prices_2019).item("Rekognition DetectLabels")
    assert rekognition.quantity == images
    assert rekognition.usd == pytest.approx(usd, abs=CENT)


def test_two_office_cameras_for_30_days_cross_into_the_second_tier(prices_2019):
    # 2 x 864,000 = 1,728,000 images: 1,000,000 x 1.00/1000 + 728,000 x 0.80/1000 = 1,000 + 582.40
    scenario = study_scenario(cameras=2, hours_per_day=8, days_per_month=30, sample_every_n=None, sample_fps=1)
    rekognition = estimate_architecture("cloud-frames", scenario, prices_2019).item("Rekognition DetectLabels")
    assert rekognition.usd == pytest.approx(1582.40, abs=CENT)
