"""The trainer as a service: new patch sets from S3 -> a round of training per camera -> ONNX to S3.

Patch sets arrive under ``<patch prefix>/<site>/<camera>/<capture ms>.msgpack`` (the sampler's
patch_sender.py). Each turn lists what is new, feeds each camera's trainer (one network per camera:
it learns that scene), runs a round for every camera that got at least ``min_new_patches``, and puts
the network at ``model_key(site, camera)``. A set that cannot be decoded is counted and skipped.
Locally this is `hybridcam cloud sr-train`; on AWS the same loop runs in a container (docs/uplink.md).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cloud.super_resolution.model_store import DEFAULT_MODEL_PREFIX, DEFAULT_PATCH_PREFIX, model_key
from cloud.super_resolution.network import NetworkShape
from cloud.super_resolution.trainer import OnlineTrainer
from shared.schemas import PatchSet, SchemaError, decode_as
from shared.uplink import UplinkQuality

log = logging.getLogger("super_resolution.training")


@dataclass
class CameraTraining:
    trainer: OnlineTrainer
    new_patches: int = 0
    quality: UplinkQuality | None = None


@dataclass
class TrainingLoop:
    s3: Any
    bucket: str
    patch_prefix: str = DEFAULT_PATCH_PREFIX
    model_prefix: str = DEFAULT_MODEL_PREFIX
    steps_per_round: int = 100
    min_new_patches: int = 20
    cameras: dict[tuple[str, str], CameraTraining] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    last_key: dict[str, str] = field(default_factory=dict)

    def turn(self) -> list[str]:
        """Read what is new, train where enough came, export; the model keys written."""
        for key in self._new_keys():
            self._read(key)
        written = []
        for (site, camera_id), training in self.cameras.items():
            if training.new_patches < self.min_new_patches:
                continue
            loss = training.trainer.train_round(self.steps_per_round)
            key = model_key(site, camera_id, self.model_prefix)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=training.trainer.export(),
                               Metadata={"patches": str(training.trainer.patches_seen),
                                         "steps": str(training.trainer.steps)})
            log.info("%s/%s: round %d on %d new patches (%d in all), loss %.5f -> s3://%s/%s", site, camera_id,
                     training.trainer.rounds, training.new_patches, training.trainer.patches_seen, loss, self.bucket, key)
            training.new_patches = 0
            self.counters["rounds"] += 1
            written.append(key)
        return written

    def run(self, stop: threading.Event, poll_s: float = 5.0) -> None:
        while not stop.is_set():
            self.turn()
            stop.wait(poll_s)

    def _new_keys(self) -> list[str]:
        """Keys after the last one read, per camera folder (keys sort by capture time within one)."""
        fresh: list[str] = []
        for folder in self._camera_folders():
            keys = [item["Key"] for page in self._pages(Prefix=folder, StartAfter=self.last_key.get(folder, ""))
                    for item in page.get("Contents", [])]
            if keys:
                self.last_key[folder] = keys[-1]
            fresh += keys
        return fresh

    def _camera_folders(self) -> list[str]:
        sites = [p["Prefix"] for page in self._pages(Prefix=f"{self.patch_prefix.strip('/')}/", Delimiter="/")
                 for p in page.get("CommonPrefixes", [])]
        return [p["Prefix"] for site in sites for page in self._pages(Prefix=site, Delimiter="/")
                for p in page.get("CommonPrefixes", [])]

    def _pages(self, **request: str) -> Any:
        return self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **request)

    def _read(self, key: str) -> None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            patch_set = decode_as(body, PatchSet)
        except SchemaError as error:
            self.counters["patch_sets_refused"] += 1
            log.warning("patch set %s refused: %s", key, error)
            return
        quality = UplinkQuality(patch_set.shrink_factor, patch_set.uplink_jpeg_quality)
        training = self.cameras.get((patch_set.site, patch_set.camera_id))
        if training is None:
            training = CameraTraining(OnlineTrainer(NetworkShape(factor=quality.factor)))
            self.cameras[(patch_set.site, patch_set.camera_id)] = training
        pictures = [cv2.imdecode(np.frombuffer(p.jpeg, np.uint8), cv2.IMREAD_COLOR) for p in patch_set.patches]
        added = training.trainer.add([p for p in pictures if p is not None], quality)
        training.new_patches += added
        training.quality = quality
        self.counters["patch_sets_read"] += 1
        self.counters["patches_read"] += added
