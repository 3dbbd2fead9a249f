"""One event priced two ways: labelling frames live as it happens, or analysing its recordings afterwards.

Live: DetectLabels on every master frame, or on the scenario's sampled frames. Afterwards: Rekognition Video
stored-video label detection per minute of video, on the program recording alone, on every master's
recording, or on every camera's recording.
"""

from __future__ import annotations

from dataclasses import dataclass

from cost_model.price_sets import PriceSet
from cost_model.scenario import Scenario

PER_IMAGE = "rekognition.detect_labels"
PER_VIDEO_MINUTE = "rekognition.stored_video_labels_minute"


@dataclass(frozen=True)
class EventOption:
    name: str
    usd: float
    quantity: str  # what is billed, in words
    unsure: bool


def event_options(scenario: Scenario, prices: PriceSet, event_hours: float) -> list[EventOption]:
    """Rekognition charges for one event of `event_hours` (tiers restart with the event, as for a first month)."""
    per_image, per_minute = prices.get(PER_IMAGE), prices.get(PER_VIDEO_MINUTE)
    options: list[EventOption] = []
    seconds = event_hours * 3600.0
    masters = scenario.master_count
    if per_image is not None:
        every_frame = masters * scenario.fps * seconds
        sampled = masters * scenario.sampled_fps * seconds
        options.append(EventOption(f"live: every master frame ({masters} x {scenario.fps:g} fps)",
                                   per_image.cost(every_frame), f"{every_frame:,.0f} images", per_image.unsure))
        options.append(EventOption(f"live: sampled master frames ({scenario.sampled_fps:g} fps each)",
                                   per_image.cost(sampled), f"{sampled:,.0f} images", per_image.unsure))
    if per_minute is not None:
        minutes = event_hours * 60.0
        for name, streams in (("the program recording", 1), (f"the {masters} master recordings", masters),
                              (f"all {scenario.cameras} camera recordings", scenario.cameras)):
            options.append(EventOption(f"afterwards: {name}", per_minute.cost(streams * minutes),
                                       f"{streams * minutes:,.0f} video minutes", per_minute.unsure))
    return options
