"""The thin uplink's cloud path on real footage: patches to S3 -> online trainer -> model in S3 ->
the super-resolution endpoint (local model server) -> the Lambda detects on the restored frame."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import cv2
import numpy as np
import pytest

from cloud.local.model_server import LocalModelServer, start_in_thread
from shared.schemas import CloudResult, PatchSet, decode_as, decode_text
from shared.uplink import UplinkQuality, degrade, psnr, upscale_bicubic
from tests.fixtures.cloud import CloudResources, event_of, make_frame
from tests.test_super_resolution import clip_frames

pytest.importorskip("jax")
UPLINK = UplinkQuality(factor=2, jpeg_quality=30)


class BlockingS3:
    """The sampler's S3 calls are awaited (aiobotocore); this runs them on boto3 for the test."""

    def __init__(self) -> None:
        self.client = boto3.client("s3")

    async def put_object(self, **request: Any) -> Any:
        return self.client.put_object(**request)


@pytest.fixture()
def model_server(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalModelServer]:
    server = start_in_thread(0)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    try:
        yield server
    finally:
        server.stop()


def test_patches_train_a_model_the_endpoint_uses_and_the_lambda_detects_on_the_restored_frame(
        model_server: LocalModelServer, cloud_resources: CloudResources, lambda_modules: dict[str, ModuleType]) -> None:
    from cloud.super_resolution.training_loop import TrainingLoop
    from services.sampler.patch_sampler import PatchSampler
    from services.sampler.patch_sender import PatchSender

    frames = clip_frames()
    bucket = cloud_resources.bucket
    sender = PatchSender(PatchSampler(UPLINK, patches_per_s=10.0), "lobby-site", bucket, flush_s=10.0)
    for index, frame in enumerate(frames[:300]):  # 30 s of the edge choosing patches
        if sender.due(index / 10.0):
            sender.offer("wide", frame, index / 10.0)
        asyncio.run(sender.send(BlockingS3(), index / 10.0))
    asyncio.run(sender.send(BlockingS3(), 1e9))
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="sr-patches/")["Contents"]]
    assert len(keys) == 3 and all(key.startswith("sr-patches/lobby-site/wide/") for key in keys)  # one object per 10 s
    first = decode_as(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read(), PatchSet)
    assert first.shrink_factor == 2 and first.uplink_jpeg_quality == 30 and len(first.patches) >= 50

    loop = TrainingLoop(s3, bucket, steps_per_round=200, min_new_patches=20)
    assert loop.turn() == ["sr-models/lobby-site/wide.onnx"]
    assert loop.counters["patches_read"] == sender.counters["patches_chosen"] >= 250
    assert loop.turn() == []  # nothing new: no round, no upload

    # The endpoint restores a held-back frame with the trained model: sharper than bicubic.
    held_back = frames[500]
    shrunk, jpeg = degrade(held_back, UPLINK)
    runtime = boto3.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName="super-resolution-lobby", ContentType="image/jpeg", Body=jpeg,
                                     CustomAttributes=f"bucket={bucket};key=sr-models/lobby-site/wide.onnx;factor=2")
    restored = cv2.imdecode(np.frombuffer(answer["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
    assert restored.shape == held_back.shape
    bicubic = upscale_bicubic(shrunk, held_back.shape[1], held_back.shape[0])
    assert psnr(held_back, restored) > psnr(held_back, bicubic) + 0.2

    # The Lambda sends a shrunk frame through the endpoint, detects on it, and answers in the sent frame's pixels.
    settings = lambda_modules["settings"].load_settings(cloud_resources.lambda_env(
        DETECTOR_BACKEND="sagemaker", SAGEMAKER_ENDPOINT="detector", SUPER_RESOLUTION_ENDPOINT="super-resolution-lobby"))
    function = lambda_modules["handler"].DetectorFunction(settings, lambda_modules["pipeline"].build_pipeline(settings))
    person_frame = frames[330]  # a person stands in the room
    shrunk, jpeg = degrade(person_frame, UPLINK)
    frame = make_frame("wide", site="lobby-site", jpeg=jpeg, width=shrunk.shape[1], height=shrunk.shape[0], shrink_factor=2)
    calls_before = model_server.models.endpoint_calls["super-resolution-lobby"]
    assert function.handle(event_of(frame.encode())).get("batchItemFailures") == []
    assert model_server.models.endpoint_calls["super-resolution-lobby"] == calls_before + 1
    results = [decode_text(body) for body in cloud_resources.drain(cloud_resources.results_queue_url)]
    assert len(results) == 1 and isinstance(results[0], CloudResult)
    people = [d for d in results[0].detections if d.label.lower() == "person"]
    assert people, results[0].detections
    for person in people:
        assert person.box is not None and 0 <= person.box[0] < person.box[2] <= shrunk.shape[1] + 1


def test_the_template_has_the_super_resolution_endpoint_trainer_and_live_channel_off_by_default() -> None:
    from tests.test_cloud_stack import policy_document
    from tests.test_faces_template import template as read_template

    template = read_template()
    parameters, resources = template["Parameters"], template["Resources"]
    assert parameters["SuperResolution"]["Default"] == "off" and parameters["LiveChannel"]["Default"] == "off"
    by_condition = {name: r.get("Condition") for name, r in resources.items()}
    for name in ("SuperResolutionModel", "SuperResolutionEndpointConfig", "SuperResolutionEndpoint", "TrainerTask",
                 "TrainerService", "SuperResolutionInvokePolicy"):
        assert by_condition[name] == "WantsSuperResolution", name
    for name in ("LiveInput", "LiveChannelResource", "LivePackagingChannel", "LiveHlsEndpoint"):
        assert by_condition[name] == "WantsLiveChannel", name
    assert resources["LiveInput"]["Properties"]["Type"] == "RTMP_PUSH"
    trainer = resources["TrainerTask"]["Properties"]["ContainerDefinitions"][0]
    assert trainer["Command"][:3] == ["hybridcam", "cloud", "sr-train"]
    variables = resources["DetectorFunction"]["Properties"]["Environment"]["Variables"]
    assert "SUPER_RESOLUTION_ENDPOINT" in variables
    # the edge may add patches and nothing else of the training data; the models are the cloud's
    edge = policy_document(resources["EdgePolicy"]["Properties"]["PolicyDocument"])["Statement"]
    patches = [s for s in edge if s["Sid"] == "SuperResolutionPatches"]
    assert patches and patches[0]["Action"] == "s3:PutObject"
    assert not any("sr-models" in str(s["Resource"]) for s in edge)
    rules = resources["FramesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "sr-patches/" for r in rules)
