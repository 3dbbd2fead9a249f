"""Ids that the cloud turns into DynamoDB and S3 keys (the site, the camera, the frame) are bounded at decode:
a hostile frame cannot make a key too long for DynamoDB and fail its record at the alert claim."""

from __future__ import annotations

import msgpack
import pytest

from shared.schemas import MAX_NAME_CHARS, CloudFrame, SchemaError, decode
from tests.fixtures.cloud import make_frame


def _with(**changes: object) -> bytes:
    fields = msgpack.unpackb(make_frame().encode(), raw=False)
    return msgpack.packb({**fields, **changes}, use_bin_type=True)


def test_the_longest_allowed_ids_decode() -> None:
    frame = decode(_with(site="s" * MAX_NAME_CHARS, camera_id="c" * MAX_NAME_CHARS))
    assert isinstance(frame, CloudFrame) and len(frame.site) == MAX_NAME_CHARS


@pytest.mark.parametrize("field", ["site", "camera_id", "frame_id"])
def test_an_overlong_id_is_refused(field: str) -> None:
    with pytest.raises(SchemaError, match=field):
        decode(_with(**{field: "x" * (MAX_NAME_CHARS + 1)}))
