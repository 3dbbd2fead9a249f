"""The running cost of the cloud path while the site runs, from the sampler's live counters.

The same projection as ``hybridcam cost --from-run``: the counters so far are scaled to a
month of the site's master cameras and priced as the hybrid architecture. "So far" is the
cloud part of that month, pro rata to the time the sampler has been running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from cost_model.estimate import ArchitectureEstimate, estimate_architecture
from cost_model.price_sets import PriceSet, load_price_set
from cost_model.run_counters import RunCounters, project_to_month
from cost_model.scenario import Scenario

EDGE_ITEM_KEY = "scenario"  # line items priced by the scenario (edge box, electricity), not by AWS


@dataclass(frozen=True)
class RunningCost:
    so_far_usd: float
    cloud_month_usd: float
    hybrid_month_usd: float
    price_set: str

    def as_dict(self) -> dict[str, float | str]:
        return {"so_far_usd": self.so_far_usd, "cloud_month_usd": self.cloud_month_usd,
                "hybrid_month_usd": self.hybrid_month_usd, "price_set": self.price_set}


@lru_cache(maxsize=4)
def _prices(name: str) -> PriceSet:
    return load_price_set(name)


def cloud_usd(estimate: ArchitectureEstimate) -> float:
    return sum(item.usd for item in estimate.items if item.price_key != EDGE_ITEM_KEY)


def running_cost(sampler_counters: dict[str, float], alerts: float, price_set: str,
                 lambda_batch_size: int = 10) -> RunningCost | None:
    """None until the sampler has reported how long it has run."""
    duration_s = float(sampler_counters.get("uptime_s", 0.0))
    if duration_s <= 0:
        return None
    records = int(sampler_counters.get("records_sent", 0))
    run = RunCounters(
        frames_sampled=int(sampler_counters.get("frames_sampled", 0)), bytes_sent=int(sampler_counters.get("bytes_sent", 0)),
        records_sent=records, handler_invocations=math.ceil(records / lambda_batch_size), alerts=int(alerts),
        duration_s=duration_s, cameras=max(1, int(sampler_counters.get("master_cameras", 1))),
    )
    scenario = Scenario(cameras=run.cameras, masters="all", sample_fps=run.sampled_fps_per_camera or None,
                        price_set=price_set, architectures=["hybrid"])
    estimate = estimate_architecture("hybrid", scenario, _prices(price_set), project_to_month(run, scenario))
    month_cloud = cloud_usd(estimate)
    return RunningCost(so_far_usd=month_cloud * duration_s / (scenario.active_hours * 3600),
                       cloud_month_usd=month_cloud, hybrid_month_usd=estimate.total, price_set=price_set)
