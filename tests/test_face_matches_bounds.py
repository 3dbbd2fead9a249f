"""FaceMatches is refused at decode when a number is not finite or a list or string is too long
(security review, finding 3): one such message used to crash the compositor's renderer (int(NaN))
and make the dashboard's /api/state answer 500 (JSON refuses NaN)."""

from __future__ import annotations

import json
import math

import msgpack
import pytest

from services.dashboard.watch_list import hit_views
from shared.schemas import MAX_FACE_MATCHES, FaceMatch, FaceMatches, SchemaError, decode

GOOD_MATCH = {"person": "Ada Lovelace", "face_id": "f" * 36, "similarity": 97.5, "box": [10.0, 20.0, 50.0, 70.0],
              "crop_jpeg": b"\xff\xd8\xff" + b"0" * 100}
GOOD = {"schema": "face_matches", "v": 1, "site": "demo", "frame_id": "cam1-1-1", "camera_id": "cam1", "seq": 1,
        "capture_ts": 1_700_000_000.0, "processed_ts": 1_700_000_001.0, "width": 1920, "height": 1080,
        "matches": [GOOD_MATCH], "alerts": ["Ada Lovelace"]}


def _raw(**changes: object) -> bytes:
    return msgpack.packb({**GOOD, **changes}, use_bin_type=True)


def test_a_good_message_decodes_and_renders_as_json() -> None:
    message = decode(_raw())
    assert isinstance(message, FaceMatches)
    json.dumps(hit_views(message), allow_nan=False)


@pytest.mark.parametrize("changes", [
    {"capture_ts": math.nan}, {"processed_ts": math.inf}, {"capture_ts": -1.0},
    {"matches": [{**GOOD_MATCH, "box": [math.nan, 0.0, 1.0, 1.0]}]},
    {"matches": [{**GOOD_MATCH, "box": [0.0, 0.0, math.inf, 1.0]}]},
    {"matches": [{**GOOD_MATCH, "similarity": math.nan}]},
    {"matches": [GOOD_MATCH] * (MAX_FACE_MATCHES + 1)},
    {"matches": [{**GOOD_MATCH, "person": "x" * 256}]},
    {"matches": [{**GOOD_MATCH, "crop_jpeg": b"\xff" * (1024 * 1024)}]},
    {"alerts": ["y"] * (MAX_FACE_MATCHES + 1)},
    {"camera_id": "c" * 10_000}, {"width": 0}, {"seq": -1},
])
def test_non_finite_or_oversized_fields_are_refused(changes: dict) -> None:
    with pytest.raises(SchemaError):
        decode(_raw(**changes))


def test_the_model_refuses_nan_when_built_in_code_too() -> None:
    with pytest.raises(ValueError):
        FaceMatch(person="a", face_id="b", similarity=90.0, box=(math.nan, 0.0, 1.0, 1.0))
