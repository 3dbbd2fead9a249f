"""Break-even between Rekognition per-image pricing and an always-on SageMaker endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from cost_model.price_sets import PriceSet
from cost_model.scenario import Scenario


@dataclass(frozen=True)
class Breakeven:
    endpoint_instance: str
    endpoint_usd_per_month: float
    images_per_month: float | None  # None: Rekognition never costs as much as the endpoint
    frames_per_s: float | None  # sustained over the scenario's active hours, whole site
    frames_per_s_per_camera: float | None

    def sentence(self) -> str:
        if self.images_per_month is None or self.frames_per_s is None or self.frames_per_s_per_camera is None:
            return (
                f"Rekognition never reaches the cost of an always-on {self.endpoint_instance} endpoint "
                f"({self.endpoint_usd_per_month:,.2f} USD a month)."
            )
        return (
            f"Break-even: an always-on {self.endpoint_instance} endpoint costs {self.endpoint_usd_per_month:,.2f} USD "
            f"a month, as much as Rekognition for {self.images_per_month:,.0f} images a month "
            f"({self.frames_per_s:.3g} frames/s over the active hours, {self.frames_per_s_per_camera:.3g} per camera); "
            "above that the endpoint is cheaper if one instance keeps up."
        )


def rekognition_vs_endpoint(scenario: Scenario, prices: PriceSet) -> Breakeven | None:
    """None when the price set lacks either price."""
    rekognition = prices.get("rekognition.detect_labels")
    endpoint = prices.get(f"sagemaker.{scenario.sagemaker_instance}")
    if rekognition is None or endpoint is None:
        return None
    endpoint_usd = endpoint.cost(scenario.provisioned_hours_per_month)
    images = rekognition.quantity_for_cost(endpoint_usd)
    if images is None:
        return Breakeven(scenario.sagemaker_instance, endpoint_usd, None, None, None)
    active_seconds = scenario.active_hours * 3600
    site_fps = images / active_seconds
    return Breakeven(scenario.sagemaker_instance, endpoint_usd, images, site_fps, site_fps / scenario.cameras)
