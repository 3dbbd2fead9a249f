"""The whole cloud path on this machine, for `hybridcam demo` and the end-to-end tests.

:func:`start_local_cloud` starts the moto AWS server and the local model server (the real
detector behind DetectLabels and SageMaker InvokeEndpoint), deploys cloud/cfn/template.yaml into
moto with :func:`cloud.deploy.deploy_stack`, and returns a :class:`LocalCloud` whose
``environment()`` holds every variable the edge processes need: AWS_* (moto, plus the Rekognition
and SageMaker runtime endpoints pointed at the model server), the Lambda's configuration for
`hybridcam cloud poll`, HYBRIDCAM_SAMPLER_*, HYBRIDCAM_BRIDGE_* and HYBRIDCAM_DASHBOARD_*.

While it runs, this process's own AWS SDK clients point at moto too (the model server reads
claim-checked images from S3 with them); :meth:`LocalCloud.stop` puts the environment back.
moto cannot run Lambda code without Docker, so `hybridcam cloud poll` runs the unchanged handler.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.deploy import deploy_stack
from cloud.local.model_server import LocalModelServer, start_in_thread
from cloud.packaging import build_lambda_zip
from devstack.servers import LocalMoto

log = logging.getLogger("hybridcam.cloud.local")

REGION = "us-east-1"
SAGEMAKER_ENDPOINT = "hybridcam-detector"


@dataclass
class LocalCloud:
    moto: LocalMoto
    models: LocalModelServer
    outputs: dict[str, str]
    run_dir: Path
    stack_name: str
    lambda_settings: dict[str, str]
    edge_settings: dict[str, str] = field(default_factory=dict)
    _saved_environment: dict[str, str | None] = field(default_factory=dict)

    @property
    def aws_url(self) -> str:
        return self.moto.url

    @property
    def models_url(self) -> str:
        return self.models.url

    def aws_environment(self) -> dict[str, str]:
        return {
            **self.moto.environment(),
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_REKOGNITION": self.models.url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.models.url,
        }

    def environment(self) -> dict[str, str]:
        """Every variable the sampler, the results bridge, the dashboard and `hybridcam cloud poll` need."""
        outputs = self.outputs
        return {
            **self.aws_environment(),
            # the Lambda handler's configuration (the poller runs it in its own process)
            "FRAMES_BUCKET": outputs["FramesBucketName"], "FRAMES_TABLE": outputs["FramesTableName"],
            "ALERT_TOPIC_ARN": outputs["AlertTopicArn"], "RESULTS_QUEUE_URL": outputs["ResultsQueueUrl"],
            "FAILED_RECORDS_QUEUE_URL": outputs["FailedRecordsQueueUrl"],
            "FACE_MATCHES_TABLE": outputs["FaceMatchesTableName"],
            **self.lambda_settings,
            "HYBRIDCAM_CLOUD_STACK_NAME": self.stack_name,
            "HYBRIDCAM_CLOUD_REGION": REGION,
            "HYBRIDCAM_CLOUD_POLL_CHECKPOINT": str(self.run_dir / "cloud" / "poller-checkpoints.json"),
            "HYBRIDCAM_SAMPLER_STREAM_NAME": outputs["StreamName"],
            "HYBRIDCAM_SAMPLER_REGION": REGION,
            "HYBRIDCAM_SAMPLER_CLAIM_CHECK_BUCKET": outputs["FramesBucketName"],
            "HYBRIDCAM_SAMPLER_SPOOL_DIR": str(self.run_dir / "sampler-spool"),
            "HYBRIDCAM_SAMPLER_COUNTERS_FILE": str(self.run_dir / "sampler-run.json"),
            "HYBRIDCAM_BRIDGE_QUEUE_URL": outputs["ResultsQueueUrl"],
            "HYBRIDCAM_BRIDGE_REGION": REGION,
            "HYBRIDCAM_DASHBOARD_FRAMES_TABLE": outputs["FramesTableName"],
            "HYBRIDCAM_DASHBOARD_FRAMES_BUCKET": outputs["FramesBucketName"],
            "HYBRIDCAM_DASHBOARD_REGION": REGION,
            **self.edge_settings,
        }

    def point_this_process_here(self) -> None:
        for name, value in self.aws_environment().items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def stop(self) -> None:
        self.models.stop()
        self.moto.stop()
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()


# The local face models' own scale (docs/faces.md): BlazeFace scores real faces 67-95, so the
# Rekognition-sized default confidence bar (90) would skip most of them.
LOCAL_FACE_SETTINGS = {"FACE_MIN_CONFIDENCE": "60", "FACE_MATCH_THRESHOLD": "80"}


def enable_local_face_search(cloud: LocalCloud) -> None:
    """Create the stack's face collection in the local model server and turn face search on for the edge and Lambda."""
    import boto3

    collection = cloud.outputs["FaceCollectionId"]
    rekognition = boto3.client("rekognition", region_name=REGION, endpoint_url=cloud.models.url)
    rekognition.create_collection(CollectionId=collection)
    cloud.lambda_settings.update({"FACE_SEARCH": "enabled", "FACE_COLLECTION": collection, **LOCAL_FACE_SETTINGS})
    cloud.edge_settings.update({"HYBRIDCAM_SAMPLER_FACE_WATCH": "true", "HYBRIDCAM_CLOUD_FACE_COLLECTION": collection})


def start_local_cloud(
    run_dir: Path,
    stack_name: str = "hybridcam-local",
    *,
    detector: str = "tiled",
    backend: str = "rekognition",
    watch_labels: str = "Person",
    min_confidence: float = 50.0,
    alert_cooldown_s: int = 60,
    batch_size: int = 10,
    face_search: bool = False,
) -> LocalCloud:
    """Start moto and the model server, deploy the stack, and return what the edge needs to use it.

    ``face_search`` turns the face watch-list on: the stack parameter, the sampler's marking of frames
    with a person big enough for a face, and the stack's collection in the local model server (moto
    skips AWS::Rekognition::Collection).
    """
    run_dir = Path(run_dir)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server would log every request
    (run_dir / "cloud").mkdir(parents=True, exist_ok=True)
    moto = LocalMoto(log_path=run_dir / "logs" / "moto.log").start()
    models: LocalModelServer | None = None
    try:
        models = start_in_thread(0, detector=detector)
        lambda_settings = {
            "DETECTOR_BACKEND": backend, "SAGEMAKER_ENDPOINT": SAGEMAKER_ENDPOINT, "WATCH_LABELS": watch_labels,
            "MIN_CONFIDENCE": f"{min_confidence:g}", "ALERT_COOLDOWN_S": str(alert_cooldown_s), "SITE": stack_name,
        }
        cloud = LocalCloud(moto, models, {}, run_dir, stack_name, lambda_settings)
        cloud.point_this_process_here()
        params: dict[str, Any] = {
            "DetectorBackend": backend, "SageMakerEndpointName": SAGEMAKER_ENDPOINT, "WatchLabels": watch_labels,
            "MinConfidence": min_confidence, "AlertCooldownSeconds": alert_cooldown_s, "BatchSize": batch_size,
            "FaceSearch": "enabled" if face_search else "disabled",
        }
        # moto never runs the code, so our modules alone will do; built in the run folder, apart from other builds.
        code = build_lambda_zip(run_dir / "cloud" / "detector-code-only.zip", with_dependencies=False)
        cloud.outputs = deploy_stack(stack_name, params, REGION, zip_path=code, waiter_delay_s=1, say=log.info)
        if face_search:
            enable_local_face_search(cloud)
        return cloud
    except BaseException:
        if models is not None:
            models.stop()
        moto.stop()
        raise
