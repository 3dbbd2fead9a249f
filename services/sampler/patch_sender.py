"""Patches for the cloud's super-resolution trainer: chosen on the edge, batched, put in S3.

The patch sampler (patch_sampler.py) looks at a master frame when its rate allows; the chosen
patches are JPEG-encoded at full quality, paid for from the uplink budget when there is one, and
gathered per camera into a PatchSet (shared/schemas.py). A set goes to S3 under
``<prefix>/<site>/<camera>/<first capture ms>.msgpack`` every ``flush_s`` seconds, so a site makes
a few S3 PUTs a minute, not one per patch. Patches are training data, not evidence: a set the
bucket refuses is dropped and counted, never spooled.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from services.sampler.patch_sampler import PatchSampler, encode_patch
from shared.schemas import MAX_PATCHES, PatchSet, UplinkPatch
from shared.uplink import ByteBudget

log = logging.getLogger("sampler.patches")


class PatchSender:
    def __init__(self, sampler: PatchSampler, site: str, bucket: str, prefix: str = "sr-patches",
                 flush_s: float = 10.0, budget: ByteBudget | None = None) -> None:
        self.sampler = sampler
        self.site = site
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.flush_s = flush_s
        self.budget = budget
        self.counters: Counter[str] = Counter()
        self.pending: dict[str, list[UplinkPatch]] = {}
        self.frame_size: dict[str, tuple[int, int]] = {}
        self.opened: dict[str, float] = {}
        self.outbox: list[tuple[str, PatchSet]] = []

    def due(self, ts: float) -> bool:
        return self.sampler.due(ts)

    def offer(self, camera_id: str, pixels: np.ndarray, ts: float) -> None:
        """Choose this frame's informative patches and keep those the budget pays for."""
        size = (int(pixels.shape[1]), int(pixels.shape[0]))
        if camera_id in self.pending and self.frame_size[camera_id] != size:
            self._close(camera_id)  # the camera changed resolution: what came before goes as it is
        self.frame_size[camera_id] = size
        choice = self.sampler.choose(pixels, ts)
        self.counters["patch_frames_examined"] += 1
        for patch in choice.patches:
            jpeg = encode_patch(patch)
            if self.budget is not None:
                if self.budget.refill(ts) < len(jpeg):
                    self.counters["patches_over_budget"] += 1
                    continue
                self.budget.spend(len(jpeg))
            self.pending.setdefault(camera_id, []).append(
                UplinkPatch(capture_ts=ts, x=patch.x, y=patch.y, jpeg=jpeg, distortion=round(patch.distortion, 3)))
            self.opened.setdefault(camera_id, ts)
            self.counters["patches_chosen"] += 1
            self.counters["patch_bytes"] += len(jpeg)
            if len(self.pending[camera_id]) >= MAX_PATCHES:
                self._close(camera_id)

    def ready(self, now: float) -> list[tuple[str, PatchSet]]:
        """(S3 key, set) of every set that is full or ``flush_s`` old at capture time ``now``."""
        for camera_id in [c for c, opened in self.opened.items() if now - opened >= self.flush_s]:
            self._close(camera_id)
        out, self.outbox = self.outbox, []
        return out

    def _close(self, camera_id: str) -> None:
        patches = self.pending.pop(camera_id, [])
        self.opened.pop(camera_id, None)
        if not patches:
            return
        width, height = self.frame_size[camera_id]
        quality = self.sampler.quality
        patch_set = PatchSet(site=self.site, camera_id=camera_id, frame_width=width, frame_height=height,
                             shrink_factor=quality.factor, uplink_jpeg_quality=quality.jpeg_quality, patches=patches)
        self.outbox.append((f"{self.prefix}/{self.site}/{camera_id}/{int(patches[0].capture_ts * 1000)}.msgpack", patch_set))

    async def send(self, s3: Any, now: float) -> None:
        for key, patch_set in self.ready(now):
            try:
                await s3.put_object(Bucket=self.bucket, Key=key, Body=patch_set.encode(),
                                    ContentType="application/x-msgpack")
            except Exception as error:  # noqa: BLE001 - any refusal: training data is dropped, counted
                self.counters["patch_sets_dropped"] += 1
                log.warning("patch set %s not stored (%s); dropped", key, type(error).__name__)
                continue
            self.counters["patch_sets_sent"] += 1
