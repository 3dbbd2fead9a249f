"""Where the trained networks live: one ONNX model per camera in the frames bucket.

``<prefix>/<site>/<camera>.onnx`` (default prefix ``sr-models``). The trainer writes a camera's
model after each round; the processor reads it, and reloads it when its ETag changes.
"""

from __future__ import annotations

DEFAULT_MODEL_PREFIX = "sr-models"
DEFAULT_PATCH_PREFIX = "sr-patches"


def model_key(site: str, camera_id: str, prefix: str = DEFAULT_MODEL_PREFIX) -> str:
    return f"{prefix.strip('/')}/{site}/{camera_id}.onnx"
