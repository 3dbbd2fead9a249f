"""Which frames go to the cloud: a pluggable policy.

A policy answers one question per frame reference, cheaply (it runs for every frame of
every master camera, before any pixels are read). EveryNthFrame is the first one; later
policies (motion, edge confidence, scene change) implement the same Protocol.
"""

from __future__ import annotations

from typing import Protocol

from shared.schemas import FrameRef
from shared.site_config import ResolvedCamera


class SamplingPolicy(Protocol):
    def should_send(self, camera: ResolvedCamera, ref: FrameRef) -> bool: ...

    def describe(self) -> str: ...


class EveryNthFrame:
    """Send frames whose sequence number is a multiple of N (the camera's cloud_sample_every).

    Deciding by sequence number, not by a local count, keeps the choice the same after a
    sampler restart or a replay of the stream.
    """

    def __init__(self, every: int | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError("every must be at least 1")
        self.every = every

    def interval(self, camera: ResolvedCamera) -> int:
        return self.every or camera.cloud_sample_every

    def should_send(self, camera: ResolvedCamera, ref: FrameRef) -> bool:
        return ref.seq % self.interval(camera) == 0

    def describe(self) -> str:
        return f"every {self.every}th frame" if self.every else "every Nth frame (each camera's cloud_sample_every)"
