"""Program recordings and the cloud: upload a run's MP4 segments to the stack's bucket.

  hybridcam recordings upload                      the demo's recordings (runs/demo/program/recordings)
  hybridcam recordings upload --folder DIR --site NAME --bucket BUCKET

Segments go to s3://BUCKET/recordings/<site>/<segment>.mp4; one already there with the same size is skipped,
so the command can run again after an interruption and sends only what is missing. The bucket is --bucket,
HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET, or the stack's FramesBucketName output; its lifecycle rule expires
recordings after the stack's VideoRetentionDays. `hybridcam analyze-video --recording` analyses them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from shared.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = sub.add_parser("upload", help="upload the program recordings to the stack's bucket (skips those already there)")
    upload.add_argument("--folder", type=Path, help="the compositor's MP4 segments (default HYBRIDCAM_VIDEO_RECORDINGS_DIR, "
                                                    "runs/demo/program/recordings)")
    upload.add_argument("--site", help="site name in the key (default: the site file's, HYBRIDCAM_SITE_FILE)")
    upload.add_argument("--bucket", help="bucket (default HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET or the stack's FramesBucketName)")
    upload.add_argument("--stack-name", help="CloudFormation stack (default HYBRIDCAM_CLOUD_STACK_NAME or hybridcam)")
    upload.add_argument("--region", help="AWS region (default HYBRIDCAM_CLOUD_REGION or the SDK's)")


def _site_name(given: str | None) -> str:
    if given:
        return given
    from shared.settings import DEFAULT_SITE_FILE
    from shared.site_config import load_site

    return load_site(Path(os.environ.get("HYBRIDCAM_SITE_FILE", DEFAULT_SITE_FILE))).site


def _bucket(args: argparse.Namespace, stack: str, region: str | None) -> str:
    bucket = args.bucket or os.environ.get("HYBRIDCAM_COMPOSITOR_UPLOAD_BUCKET")
    if bucket:
        return bucket
    from cloud.deploy import DeployError, stack_outputs

    try:
        outputs = stack_outputs(stack, region)
    except DeployError as error:
        raise ConfigError(f"no bucket given and the stack {stack!r} could not be read ({error}); pass --bucket.") from None
    if "FramesBucketName" not in outputs:
        raise ConfigError(f"the stack {stack!r} has no FramesBucketName output; pass --bucket.")
    return outputs["FramesBucketName"]


def run(args: argparse.Namespace) -> int:
    from cloud.settings import load_cloud_settings
    from cloud.stored_video.settings import load_video_settings
    from services.compositor.outputs.recording_upload import s3_client, upload_recordings

    cloud = load_cloud_settings()
    region = args.region or cloud.region
    folder = args.folder or load_video_settings().recordings_dir
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of program recordings; pass --folder.")
    bucket = _bucket(args, args.stack_name or cloud.stack_name, region)
    summary = upload_recordings(s3_client(region), folder, bucket, _site_name(args.site), print)
    return 0 if summary.ok else 1
