"""Deploy or destroy the AWS stack of the cloud path, and run its local stand-ins.

  hybridcam cloud deploy       package the Lambda, upload it and create or update the stack; print its outputs
  hybridcam cloud destroy      empty the frames bucket and delete the stack
  hybridcam cloud outputs      print the stack's outputs (as KEY=VALUE, or JSON with --json)
  hybridcam cloud local-models serve the local Rekognition/SageMaker stand-in (a real ONNX detector)
  hybridcam cloud poll         run the local Kinesis event source: feed the stream to the Lambda handler
  hybridcam cloud sr-train     the super-resolution trainer: patch sets in S3 -> a model per camera (docs/uplink.md)
  hybridcam cloud sr-serve     the super-resolution endpoint's container (SageMaker's /ping and /invocations)

Settings: HYBRIDCAM_CLOUD_* (see cloud/settings.py); AWS clients honour AWS_ENDPOINT_URL (moto).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, NoCredentialsError

from shared.errors import ConfigError

LAMBDA_ENV_FROM_OUTPUTS = {
    "FRAMES_BUCKET": "FramesBucketName", "FRAMES_TABLE": "FramesTableName",
    "ALERT_TOPIC_ARN": "AlertTopicArn", "RESULTS_QUEUE_URL": "ResultsQueueUrl",
    "FAILED_RECORDS_QUEUE_URL": "FailedRecordsQueueUrl",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    deploy = sub.add_parser("deploy", help="package, upload and create or update the stack")
    _stack_arguments(deploy)
    deploy.add_argument("--backend", choices=["rekognition", "sagemaker"], help="detector backend")
    deploy.add_argument("--sagemaker-endpoint", help="SageMaker endpoint name (for --backend sagemaker)")
    deploy.add_argument("--watch-labels", help="comma-separated labels that raise alerts (default Person)")
    deploy.add_argument("--min-confidence", type=float, help="0-100 (default 60)")
    deploy.add_argument("--alert-email", help="email address subscribed to alerts")
    deploy.add_argument("--alert-phone", help="E.164 phone number subscribed to SMS alerts")
    deploy.add_argument("--batch-size", type=int, help="Kinesis records per Lambda invocation (default 10)")
    deploy.add_argument("--code-bucket", help="bucket for the Lambda zip (created when missing)")
    deploy.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any other template parameter (repeatable)")
    deploy.add_argument("--no-dependencies", action="store_true",
                        help="package only our modules (for the local moto stack, which never runs the code)")
    destroy = sub.add_parser("destroy", help="empty the frames bucket and delete the stack")
    _stack_arguments(destroy)
    outputs = sub.add_parser("outputs", help="print the stack's outputs")
    _stack_arguments(outputs)
    outputs.add_argument("--json", action="store_true")
    models = sub.add_parser("local-models", help="serve the local Rekognition/SageMaker stand-in")
    models.add_argument("--host")
    models.add_argument("--port", type=int)
    models.add_argument("--detector", default="tiled", help="detector name or ONNX path (default tiled)")
    poll = sub.add_parser("poll", help="run the local Kinesis event source for the Lambda handler")
    _stack_arguments(poll)
    poll.add_argument("--stream", help="stream name (default: the stack's StreamName output)")
    poll.add_argument("--batch-size", type=int, default=10)
    poll.add_argument("--max-retries", type=int, default=3)
    poll.add_argument("--checkpoint", help="checkpoint file (default HYBRIDCAM_CLOUD_POLL_CHECKPOINT)")
    poll.add_argument("--once", action="store_true", help="drain the stream once and exit")
    train = sub.add_parser("sr-train", help="train the super-resolution networks online from the edge's patches")
    train.add_argument("--bucket", required=True, help="the frames bucket (the stack's FramesBucketName output)")
    train.add_argument("--patch-prefix", default="sr-patches", help="where the sampler puts patch sets (default sr-patches)")
    train.add_argument("--model-prefix", default="sr-models", help="where models go (default sr-models)")
    train.add_argument("--steps-per-round", type=int, default=100, help="Adam steps per round (default 100)")
    train.add_argument("--min-new-patches", type=int, default=20, help="patches a camera needs for a new round (default 20)")
    train.add_argument("--poll-s", type=float, default=10.0, help="seconds between looks for new patch sets (default 10)")
    train.add_argument("--once", action="store_true", help="one turn, then exit")
    serve_sr = sub.add_parser("sr-serve", help="serve the super-resolution endpoint's container on port 8080")
    serve_sr.add_argument("--host", default="0.0.0.0")
    serve_sr.add_argument("--port", type=int, default=8080)


def _stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-name", help="CloudFormation stack (default HYBRIDCAM_CLOUD_STACK_NAME or hybridcam)")
    parser.add_argument("--region", help="AWS region (default HYBRIDCAM_CLOUD_REGION or the SDK's)")


def template_parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "DetectorBackend": args.backend, "SageMakerEndpointName": args.sagemaker_endpoint,
        "WatchLabels": args.watch_labels, "MinConfidence": args.min_confidence, "AlertEmail": args.alert_email,
        "AlertPhone": args.alert_phone, "BatchSize": args.batch_size,
    }
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param takes NAME=VALUE, got {item!r}.")
        params[name] = value
    return {name: value for name, value in params.items() if value is not None}


def print_outputs(outputs: dict[str, str], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(outputs, indent=2))
        return
    for key, value in sorted(outputs.items()):
        print(f"{key}={value}")


def run(args: argparse.Namespace) -> int:
    from cloud.deploy import DeployError
    from cloud.settings import load_cloud_settings

    settings = load_cloud_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stack = getattr(args, "stack_name", None) or settings.stack_name
    region = getattr(args, "region", None) or settings.region
    try:
        if args.action == "deploy":
            from cloud.deploy import deploy_stack

            outputs = deploy_stack(stack, template_parameters(args), region, code_bucket=args.code_bucket or settings.code_bucket,
                                   with_dependencies=not args.no_dependencies)
            print(f"stack {stack} is ready:")
            print_outputs(outputs)
        elif args.action == "destroy":
            from cloud.deploy import destroy_stack

            destroy_stack(stack, region)
            print(f"stack {stack} removed")
        elif args.action == "outputs":
            from cloud.deploy import stack_outputs

            print_outputs(stack_outputs(stack, region), args.json)
        elif args.action == "local-models":
            from cloud.local.model_server import serve

            serve(args.host or settings.model_host, args.port or settings.model_port, args.detector)
        elif args.action == "poll":
            return run_poller(args, stack, region, settings.poll_checkpoint)
        elif args.action == "sr-train":
            return run_trainer(args)
        elif args.action == "sr-serve":
            from cloud.super_resolution.container import serve as serve_container

            serve_container(args.host, args.port)
    except DeployError as error:
        print(f"hybridcam cloud {args.action}: {error}")
        return 1
    except NoCredentialsError:
        raise ConfigError("no AWS credentials found: configure a profile, or set AWS_ENDPOINT_URL and keys for moto.") from None
    except BotoCoreError as error:
        raise ConfigError(f"AWS could not be reached: {error}") from None
    return 0


def run_trainer(args: argparse.Namespace) -> int:
    import boto3

    try:
        from cloud.super_resolution.training_loop import TrainingLoop
    except ImportError as error:
        raise ConfigError(f"the super-resolution trainer needs JAX and optax: pip install 'hybridcam[superres]' ({error})") from None
    loop = TrainingLoop(boto3.client("s3"), args.bucket,
                        args.patch_prefix, args.model_prefix, args.steps_per_round, args.min_new_patches)
    print(f"training super-resolution networks from s3://{args.bucket}/{args.patch_prefix}/ "
          f"-> s3://{args.bucket}/{args.model_prefix}/<site>/<camera>.onnx; Ctrl-C stops")
    if args.once:
        written = loop.turn()
        print(f"{len(written)} model(s) written: {', '.join(written) or 'none (not enough new patches)'}")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        loop.run(stop, args.poll_s)
    except KeyboardInterrupt:
        pass
    print(f"trainer stopped: {loop.counters['rounds']} round(s), {loop.counters['patches_read']} patches read")
    return 0


def run_poller(args: argparse.Namespace, stack: str, region: str | None, default_checkpoint: str) -> int:
    from cloud.local.event_source_poller import EventSourcePoller, load_handler

    stream = args.stream
    if stream is None or any(name not in os.environ for name in LAMBDA_ENV_FROM_OUTPUTS):
        from cloud.deploy import stack_outputs

        outputs = stack_outputs(stack, region)
        stream = stream or outputs["StreamName"]
        for variable, output in LAMBDA_ENV_FROM_OUTPUTS.items():
            os.environ.setdefault(variable, outputs[output])
        if "FaceCollectionId" in outputs:  # the watch-list; searched only when FACE_SEARCH=enabled
            os.environ.setdefault("FACE_COLLECTION", outputs["FaceCollectionId"])
        if "FaceMatchesTableName" in outputs:
            os.environ.setdefault("FACE_MATCHES_TABLE", outputs["FaceMatchesTableName"])
    poller = EventSourcePoller(stream, load_handler(), args.batch_size, args.checkpoint or default_checkpoint,
                               args.max_retries)
    print(poller.describe())
    if args.once:
        print(f"{poller.run_once()} records processed, {poller.dead_lettered} dead-lettered")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        poller.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    return 0
