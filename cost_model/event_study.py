"""The 2019 case study's 2-hour event priced with a measured send fraction.

The study analysed an event of 2 hours with 6 cameras, 2 of them masters at 15 fps, and paid
216 USD of Rekognition sending every master frame (2 x 15 x 7,200 = 216,000 images at 1 USD per
1,000). The hybrid sends only a fraction of master frames: that fraction comes from a measurement
(``hybridcam sampling-eval --json`` on recorded footage, or a real run's counters file), never
from a guess. The price set is the study's own (``2019-eu-west-1``) so the figures compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cost_model.estimate import estimate_architecture
from cost_model.price_sets import PriceSet
from cost_model.scenario import Scenario

STUDY_CAMERAS = 6
STUDY_MASTERS = 2
STUDY_FPS = 15.0
STUDY_HOURS = 2.0
STUDY_PRICE_SET = "2019-eu-west-1"
STUDY_PAID_USD = 216.0
GOAL_USD = 5.0


class SendFractionError(ValueError):
    """A send fraction that cannot be read; the message is one sentence for the user."""


@dataclass(frozen=True)
class MeasuredFraction:
    fraction: float
    source: str
    sent_per_s: float | None = None
    """frames sent per second per camera where the source says (the adaptive policy's limits are per
    second, so this rate carries over to a camera of another frame rate better than the fraction)"""


@dataclass(frozen=True)
class EventCost:
    send_fraction: float
    images: float
    rekognition_usd: float
    every_frame_usd: float

    def sentence(self, source: str) -> str:
        verdict = "within" if self.rekognition_usd <= GOAL_USD else "over"
        return (f"The 2019 study's 2-hour event ({STUDY_CAMERAS} cameras, {STUDY_MASTERS} masters at {STUDY_FPS:g} fps) "
                f"with the measured send fraction {self.send_fraction:.2%} ({source}): {self.images:,.0f} images, "
                f"{self.rekognition_usd:,.2f} USD of Rekognition, {verdict} the {GOAL_USD:g} USD goal "
                f"(the study paid {self.every_frame_usd:,.2f} USD sending every master frame).")


def rate_sentence(sent_per_s: float, prices: PriceSet) -> str:
    """The same event priced by the measured send rate instead of the fraction."""
    cost = event_cost(min(1.0, sent_per_s / STUDY_FPS), prices)
    return (f"By the measured send rate instead ({sent_per_s:.2f} frames/s per camera; the policy's limits are per "
            f"second, so the rate, not the fraction, carries over to {STUDY_FPS:g} fps cameras): {cost.images:,.0f} "
            f"images, {cost.rekognition_usd:,.2f} USD of Rekognition.")


def study_scenario(send_fraction: float) -> Scenario:
    return Scenario.model_validate({
        "cameras": STUDY_CAMERAS, "fps": STUDY_FPS, "masters": list(range(1, STUDY_MASTERS + 1)),
        "sample_fps": max(STUDY_FPS * send_fraction, 1e-9), "hours_per_day": STUDY_HOURS, "days_per_month": 1,
        "provisioned_hours": "active", "alert_channel": "none", "api_reads_per_day": 0,
        "architectures": ["hybrid"], "price_set": STUDY_PRICE_SET})


def event_cost(send_fraction: float, prices: PriceSet) -> EventCost:
    if not 0.0 <= send_fraction <= 1.0:
        raise SendFractionError(f"a send fraction is between 0 and 1, not {send_fraction:g}")
    hybrid = estimate_architecture("hybrid", study_scenario(send_fraction), prices)
    rekognition = hybrid.item("Rekognition DetectLabels")
    images = STUDY_MASTERS * STUDY_FPS * STUDY_HOURS * 3600 * send_fraction
    every_frame = prices.get("rekognition.detect_labels")
    every_frame_usd = every_frame.cost(STUDY_MASTERS * STUDY_FPS * STUDY_HOURS * 3600) if every_frame else STUDY_PAID_USD
    return EventCost(send_fraction, images, rekognition.usd if rekognition else 0.0, every_frame_usd)


def fraction_from_file(path: Path, policy: str = "adaptive") -> MeasuredFraction:
    """The send fraction in a `sampling-eval --json` file (the largest over its clips) or a run counters file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SendFractionError(f"{path} does not exist") from None
    except json.JSONDecodeError as error:
        raise SendFractionError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("clips"), list):
        found = [(clip, p) for clip in data["clips"] for p in clip.get("policies", []) if p.get("label") == policy]
        if not found:
            raise SendFractionError(f"{path} has no results for the {policy!r} policy")
        if all("objects" in p and clip.get("frames") and clip.get("fps") for clip, p in found):
            return _pooled_object_fraction(found, policy)
        fraction, name, rate = max(((p["sent_fraction"], clip.get("name", "?"),
                                     p["sent_fraction"] * clip["fps"] if clip.get("fps") else None) for clip, p in found),
                                   key=lambda item: item[0])
        return MeasuredFraction(fraction, f"policy {policy}, the largest over {len(found)} clip(s): {name}", rate)
    if isinstance(data, dict) and data.get("send_fraction") is not None:
        return MeasuredFraction(float(data["send_fraction"]), f"run of policy {data.get('policy', '?')}")
    raise SendFractionError(f"{path} is neither a sampling-eval --json file nor a run counters file with send_fraction")


def _pooled_object_fraction(found: list[tuple[dict, dict]], policy: str) -> MeasuredFraction:
    """The object-level evaluation's send fraction: frames sent over frames decided on all clips together,
    with the objects the cloud saw at that fraction (what the fraction buys)."""
    frames = sum(int(clip["frames"]) for clip, _ in found)
    seconds = sum(int(clip["frames"]) / float(clip["fps"]) for clip, _ in found)
    sent = sum(int(p["sent"]) for _, p in found)
    objects = sum(int(p["objects"]) for _, p in found)
    seen = sum(int(p["objects_seen"]) for _, p in found)
    recall = f"{seen / objects:.0%}" if objects else "-"
    per_object = f"{sent / objects:.2f}" if objects else "-"
    return MeasuredFraction(sent / frames if frames else 0.0,
                            f"policy {policy} over {len(found)} clip(s), {frames:,} frames: the cloud saw {seen} of "
                            f"{objects} objects ({recall}), {per_object} frames per object",
                            sent / seconds if seconds else None)
