"""`hybridcam cost` prices the face watch-list: DetectFaces per marked frame, SearchFacesByImage per face, storage."""

from __future__ import annotations

import pytest

from cost_model.estimate import estimate_architecture, scenario_load
from cost_model.price_sets import load_price_set
from cost_model.scenario import Scenario

FACE_ITEMS = ("Rekognition DetectFaces", "Rekognition SearchFacesByImage", "Rekognition face storage")


def test_face_calls_and_storage_are_priced_only_when_face_search_is_on() -> None:
    prices = load_price_set("us-east-1-2026")
    off = estimate_architecture("hybrid", Scenario(cameras=4, sample_every_n=15), prices)
    assert all(off.item(name) is None for name in FACE_ITEMS)

    scenario = Scenario(cameras=4, sample_every_n=15, face_search=True, face_frame_share=0.25, faces_per_face_frame=2,
                        enrolled_faces=400)
    on = estimate_architecture("hybrid", scenario, prices)
    frames = scenario_load(scenario, scenario.master_count).frames
    detect, search, storage = (on.item(name) for name in FACE_ITEMS)
    assert detect is not None and detect.quantity == pytest.approx(frames * 0.25)
    assert search is not None and search.quantity == pytest.approx(frames * 0.25 * 2)
    assert storage is not None and storage.quantity == 400 and storage.usd == pytest.approx(400 * 0.00001)
    assert detect.usd == pytest.approx(frames * 0.25 * 0.001) if frames * 0.25 <= 1e6 else detect.usd > 0
    assert on.total == pytest.approx(off.total + detect.usd + search.usd + storage.usd)
    # Figures not confirmed against the pricing page are marked so the report says so.
    assert all(prices.get(key).unsure for key in ("rekognition.detect_faces", "rekognition.search_faces_by_image",
                                                   "rekognition.face_storage_month"))
